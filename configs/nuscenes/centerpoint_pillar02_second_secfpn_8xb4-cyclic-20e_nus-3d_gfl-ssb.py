# CenterPoint-pillar nuScenes with both methods: DatasetEquity (per-sample
# Generalized Focal Loss weights, eta 0.3 as used for CenterPoint heads) and
# dynamic semantic-scale-balanced (per-class) heatmap weights.
_base_ = './centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d_equity.py'  # noqa: E501

model = dict(pts_bbox_head=dict(loss_cls=dict(
    _delete_=True, type='SemanticScaleBalancedLoss',
    loss={{_base_.model.pts_bbox_head.loss_cls}})))
custom_hooks = [
    dict(type='EquityHook', loss=dict(
        type='GeneralizedFocalLoss', eta={{_base_.equity_eta}},
        gamma={{_base_.equity_gamma}})),
    dict(type='SemanticScaleBalanceHook', warmup_epochs=5),
]
