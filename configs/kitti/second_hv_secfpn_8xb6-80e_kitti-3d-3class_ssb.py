# SECOND KITTI 3-class with dynamic semantic-scale-balanced (SSB) loss.
_base_ = 'mmdet3d::second/second_hv_secfpn_8xb6-80e_kitti-3d-3class.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
model = dict(bbox_head=dict(loss_cls=dict(
    _delete_=True, type='SemanticScaleBalancedLoss',
    loss={{_base_.model.bbox_head.loss_cls}})))
custom_hooks = [dict(type='SemanticScaleBalanceHook', warmup_epochs=5)]
