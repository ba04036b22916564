# Tiny CPU CenterPoint-pillar (tiny nuScenes) with dynamic semantic-scale-
# balanced heatmap weights. Warm-up and interval are in iterations.
_base_ = './centerpoint-pillar_tiny-nus-3d.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
model = dict(pts_bbox_head=dict(loss_cls=dict(
    _delete_=True, type='SemanticScaleBalancedLoss',
    loss={{_base_.model.pts_bbox_head.loss_cls}})))
custom_hooks = [
    dict(type='SemanticScaleBalanceHook', warmup_iters=4, interval=2)
]
