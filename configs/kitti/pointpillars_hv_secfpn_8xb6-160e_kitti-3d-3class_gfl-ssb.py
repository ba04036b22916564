# PointPillars KITTI 3-class with both methods: DatasetEquity (per-sample
# Generalized Focal Loss weights from the appearance likelihoods) and dynamic
# semantic-scale-balanced (per-class) classification weights. The lines below
# the _base_ are the _equity config's plus the SSB hook; each setting is
# written once (EquityHook first: custom_hooks.0.loss.eta, ...).
_base_ = 'mmdet3d::pointpillars/pointpillars_hv_secfpn_8xb6-160e_kitti-3d-3class.py'  # noqa: E501

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='data/kitti/equity_likelihoods.npz',
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [
    dict(type='EquityHook', loss=dict(
        type='GeneralizedFocalLoss', eta=1.0, gamma=5.0)),
    dict(type='SemanticScaleBalanceHook', warmup_epochs=5),
]
