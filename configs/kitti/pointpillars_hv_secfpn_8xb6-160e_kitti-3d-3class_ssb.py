# PointPillars KITTI 3-class with dynamic semantic-scale-balanced (SSB)
# classification weights. The model stays the stock one: the hook wraps the
# head's built loss_cls before training; every SSB option is set here.
_base_ = 'mmdet3d::pointpillars/pointpillars_hv_secfpn_8xb6-160e_kitti-3d-3class.py'  # noqa: E501

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
custom_hooks = [dict(type='SemanticScaleBalanceHook', warmup_epochs=5)]
