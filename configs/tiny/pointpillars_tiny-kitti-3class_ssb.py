# Tiny CPU PointPillars with dynamic semantic-scale-balanced (SSB) learning.
# The model is the tiny base model: the hook wraps the head's built loss_cls
# before training. Warm-up and update interval are given in iterations (the
# tiny schedule has only a few epochs).
_base_ = './pointpillars_tiny-kitti-3class.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
custom_hooks = [
    dict(type='SemanticScaleBalanceHook', warmup_iters=4, interval=2)
]
