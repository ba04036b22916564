# DatasetEquity on top of the stock mmdet3d config
# (monocular: score the same infos the mono3d train config reads)
# Only the lines below the _base_ differ from the baseline.
# The likelihood file is written by
#   python tools/compute_likelihoods.py THIS_CONFIG \
#       --out data/kitti/equity_likelihoods_mono3d.npz
_base_ = 'mmdet3d::smoke/smoke_dla34_dlaneck_gn-all_4xb8-6x_kitti-mono3d.py'  # noqa: E501

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='data/kitti/equity_likelihoods_mono3d.npz',
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [dict(type='EquityHook', loss=dict(
    type='GeneralizedFocalLoss', eta=1.0, gamma=5.0))]
