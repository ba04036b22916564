# PointPillars (FPN) nuScenes with dynamic semantic-scale-balanced (SSB)
# loss. Object features: head input level 0 (the finest FPN level).
_base_ = 'mmdet3d::pointpillars/pointpillars_hv_fpn_sbn-all_8xb4-2x_nus-3d.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
model = dict(pts_bbox_head=dict(loss_cls=dict(
    _delete_=True, type='SemanticScaleBalancedLoss',
    loss={{_base_.model.pts_bbox_head.loss_cls}})))
custom_hooks = [dict(type='SemanticScaleBalanceHook', warmup_epochs=5,
                     level=0)]
