# mmdetection3d's projects/BEVFusion LiDAR-only config (TransFusionHead) with
# dynamic semantic-scale-balanced (SSB) loss on the query classification
# loss_cls; object features: the fused BEV map at the GT box centre. Set
# MMDET3D_ROOT to your mmdetection3d 1.4 checkout and put it on PYTHONPATH
# (see the _equity config beside this one). The model stays the stock one;
# the base's custom import and hook are kept.
_base_ = '{{$MMDET3D_ROOT:SET_MMDET3D_ROOT_TO_YOUR_MMDETECTION3D_CHECKOUT}}/projects/BEVFusion/configs/bevfusion_lidar_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py'  # noqa: E501

custom_imports = dict(
    imports=['projects.BEVFusion.bevfusion', 'mmdet3d_equity'],
    allow_failed_imports=False)
custom_hooks = [
    dict(type='DisableObjectSampleHook', disable_after_epoch=15),
    dict(type='SemanticScaleBalanceHook', warmup_epochs=5)
]
