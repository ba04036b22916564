# Tiny CPU PointPillars with dynamic semantic-scale-balanced (SSB) learning.
# Warm-up and update interval are given in iterations (the tiny schedule has
# only a few epochs).
_base_ = './pointpillars_tiny-kitti-3class.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
model = dict(
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True,
            type='SemanticScaleBalancedLoss',
            loss={{_base_.model.bbox_head.loss_cls}})))
custom_hooks = [
    dict(type='SemanticScaleBalanceHook', warmup_iters=4, interval=2)
]
