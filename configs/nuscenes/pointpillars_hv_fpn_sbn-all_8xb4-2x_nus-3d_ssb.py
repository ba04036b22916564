# PointPillars (FPN) nuScenes with dynamic semantic-scale-balanced (SSB)
# loss. Object features: head input level 0 (the finest FPN level). The
# model stays the stock one: the hook wraps the head's built loss_cls.
_base_ = 'mmdet3d::pointpillars/pointpillars_hv_fpn_sbn-all_8xb4-2x_nus-3d.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
custom_hooks = [dict(type='SemanticScaleBalanceHook', warmup_epochs=5,
                     level=0)]
