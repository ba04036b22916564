# SSN (ShapeAwareHead) nuScenes with dynamic semantic-scale-balanced (SSB)
# loss on its FocalLoss. Object features: the BEV head input at the box
# centre. The model stays the stock one: the hook wraps the head's built
# loss_cls.
_base_ = 'mmdet3d::ssn/ssn_hv_secfpn_sbn-all_16xb2-2x_nus-3d.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
custom_hooks = [dict(type='SemanticScaleBalanceHook', warmup_epochs=5)]
