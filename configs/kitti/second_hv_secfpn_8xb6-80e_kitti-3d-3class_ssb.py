# SECOND KITTI 3-class with dynamic semantic-scale-balanced (SSB)
# classification weights (sparse convolutions: needs a GPU). The model stays
# the stock one: the hook wraps the head's built loss_cls before training.
_base_ = 'mmdet3d::second/second_hv_secfpn_8xb6-80e_kitti-3d-3class.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
custom_hooks = [dict(type='SemanticScaleBalanceHook', warmup_epochs=5)]
