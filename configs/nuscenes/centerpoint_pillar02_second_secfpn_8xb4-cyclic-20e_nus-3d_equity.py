# DatasetEquity on top of the stock mmdet3d config
# (eta = 0.3 as the paper used for the CenterPoint head; CBGSDataset is kept
#  inside the wrapper.)
# Only the lines below the _base_ differ from the baseline.
# The likelihood file is written by
#   python tools/compute_likelihoods.py THIS_CONFIG \
#       --out data/nuscenes/equity_likelihoods.npz
_base_ = 'mmdet3d::centerpoint/centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d.py'  # noqa: E501

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='data/nuscenes/equity_likelihoods.npz',
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [dict(type='EquityHook', loss=dict(
    type='GeneralizedFocalLoss', eta=0.3, gamma=5.0))]
