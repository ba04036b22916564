# DatasetEquity on top of mmdetection3d's projects/BEVFusion LiDAR-only
# config (TransFusionHead; eta = 0.3, as the paper used for CenterPoint on
# nuScenes). The projects/ configs are not in the mmdet3d wheel: set
# MMDET3D_ROOT to your mmdetection3d 1.4 checkout and put it on PYTHONPATH
# (for custom_imports), e.g.
#   MMDET3D_ROOT=~/mmdetection3d PYTHONPATH=~/mmdetection3d \
#       python tools/train.py THIS_CONFIG
# Only the lines below the _base_ differ from the baseline; the base's
# custom import and hook are kept; CBGSDataset stays inside the wrapper.
# The likelihood file is written by
#   python tools/compute_likelihoods.py THIS_CONFIG \
#       --out data/nuscenes/equity_likelihoods.npz
_base_ = '{{$MMDET3D_ROOT:SET_MMDET3D_ROOT_TO_YOUR_MMDETECTION3D_CHECKOUT}}/projects/BEVFusion/configs/bevfusion_lidar_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py'  # noqa: E501

custom_imports = dict(
    imports=['projects.BEVFusion.bevfusion', 'mmdet3d_equity'],
    allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='data/nuscenes/equity_likelihoods.npz',
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [
    dict(type='DisableObjectSampleHook', disable_after_epoch=15),
    dict(type='EquityHook', loss=dict(
        type='GeneralizedFocalLoss', eta=0.3, gamma=5.0))
]
