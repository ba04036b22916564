# CenterPoint (pillar 0.2) nuScenes with dynamic semantic-scale-balanced (SSB)
# loss on the heatmap GaussianFocalLoss (task channels -> global classes).
_base_ = 'mmdet3d::centerpoint/centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d.py'  # noqa: E501

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
model = dict(pts_bbox_head=dict(loss_cls=dict(
    _delete_=True, type='SemanticScaleBalancedLoss',
    loss={{_base_.model.pts_bbox_head.loss_cls}})))
custom_hooks = [dict(type='SemanticScaleBalanceHook', warmup_epochs=5)]
