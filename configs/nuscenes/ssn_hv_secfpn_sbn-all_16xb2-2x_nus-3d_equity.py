# DatasetEquity on top of the stock mmdet3d SSN (ShapeAwareHead) config.
# Only the lines below the _base_ differ from the baseline.
# The likelihood file is written by
#   python tools/compute_likelihoods.py THIS_CONFIG \
#       --out data/nuscenes/equity_likelihoods.npz
_base_ = 'mmdet3d::ssn/ssn_hv_secfpn_sbn-all_16xb2-2x_nus-3d.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='data/nuscenes/equity_likelihoods.npz',
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [dict(type='EquityHook', loss=dict(
    type='GeneralizedFocalLoss', eta=1.0, gamma=5.0))]
