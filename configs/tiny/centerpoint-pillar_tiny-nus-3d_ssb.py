# Tiny CPU CenterPoint-pillar (tiny nuScenes) with dynamic semantic-scale-
# balanced heatmap weights. The model is the tiny base model: the hook wraps
# the head's built loss_cls before training. Warm-up and interval are in
# iterations.
_base_ = './centerpoint-pillar_tiny-nus-3d.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
custom_hooks = [
    dict(type='SemanticScaleBalanceHook', warmup_iters=4, interval=2)
]
