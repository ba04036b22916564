# CenterPoint (pillar 0.2) nuScenes with dynamic semantic-scale-balanced (SSB)
# loss on the heatmap GaussianFocalLoss (task channels -> global classes).
# The model stays the stock one: the hook wraps the head's built loss_cls.
_base_ = 'mmdet3d::centerpoint/centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d.py'  # noqa: E501

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
custom_hooks = [dict(type='SemanticScaleBalanceHook', warmup_epochs=5)]
