# Tiny CPU PointPillars with both methods (DatasetEquity GFL + dynamic SSB).
# Needs the likelihood file of the _equity config (see there). SSB warm-up and
# update interval are in iterations, as in the tiny _ssb config. The lines
# below the _base_ are the _equity config's plus the SSB hook.
_base_ = './pointpillars_tiny-kitti-3class.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='{{$EQUITY_TINY_KITTI:data/tiny_kitti}}/equity_likelihoods.npz',  # noqa: E501
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [
    dict(type='EquityHook', loss=dict(
        type='GeneralizedFocalLoss', eta=1.0, gamma=5.0)),
    dict(type='SemanticScaleBalanceHook', warmup_iters=4, interval=2),
]
