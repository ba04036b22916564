# Tiny CPU PointPillars with both methods (DatasetEquity GFL + dynamic SSB).
# Needs the likelihood file of the _equity config (see there). SSB warm-up and
# update interval are in iterations, as in the tiny _ssb config.
_base_ = './pointpillars_tiny-kitti-3class_equity.py'

model = dict(bbox_head=dict(loss_cls=dict(
    _delete_=True, type='SemanticScaleBalancedLoss',
    loss={{_base_.model.bbox_head.loss_cls}})))
custom_hooks = [
    dict(type='EquityHook', loss=dict(
        type='GeneralizedFocalLoss', eta={{_base_.equity_eta}},
        gamma={{_base_.equity_gamma}})),
    dict(type='SemanticScaleBalanceHook', warmup_iters=4, interval=2),
]
