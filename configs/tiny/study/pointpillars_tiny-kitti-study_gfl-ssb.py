# The study's GFL + SSB arm: the published GFL setting and dynamic SSB.
_base_ = './pointpillars_tiny-kitti-study_equity.py'

custom_hooks = [
    dict(type='EquityHook', loss=dict(
        type='GeneralizedFocalLoss', eta=1.0, gamma=5.0)),
    dict(type='SemanticScaleBalanceHook', warmup_iters=96, interval=32),
]
