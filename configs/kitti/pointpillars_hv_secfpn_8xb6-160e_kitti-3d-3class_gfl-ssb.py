# PointPillars KITTI 3-class with both methods: DatasetEquity (per-sample
# Generalized Focal Loss weights from the appearance likelihoods) and dynamic
# semantic-scale-balanced (per-class) classification weights.
# Equity lines come from the _equity config; the SSB lines are added here.
_base_ = './pointpillars_hv_secfpn_8xb6-160e_kitti-3d-3class_equity.py'

model = dict(bbox_head=dict(loss_cls=dict(
    _delete_=True, type='SemanticScaleBalancedLoss',
    loss={{_base_.model.bbox_head.loss_cls}})))
custom_hooks = [
    dict(type='EquityHook', loss=dict(
        type='GeneralizedFocalLoss', eta={{_base_.equity_eta}},
        gamma={{_base_.equity_gamma}})),
    dict(type='SemanticScaleBalanceHook', warmup_epochs=5),
]
