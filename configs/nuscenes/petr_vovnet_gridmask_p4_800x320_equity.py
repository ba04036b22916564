# DatasetEquity on top of mmdetection3d's projects/PETR config (PETRHead;
# eta = 0.5 as the paper used for the BEVFormer query head). The projects/
# configs are not in the mmdet3d wheel: set MMDET3D_ROOT to your
# mmdetection3d 1.4 checkout and put it on PYTHONPATH (for custom_imports),
#   MMDET3D_ROOT=~/mmdetection3d PYTHONPATH=~/mmdetection3d \
#       python tools/train.py THIS_CONFIG
# Only the lines below the _base_ differ from the baseline; the base's
# custom import is kept. SSB is refused for PETRHead (its decoder embedding
# is internal to its forward; docs/equity_training.md).
# The likelihood file is written by
#   python tools/compute_likelihoods.py THIS_CONFIG \
#       --out data/nuscenes/equity_likelihoods.npz
_base_ = '{{$MMDET3D_ROOT:SET_MMDET3D_ROOT_TO_YOUR_MMDETECTION3D_CHECKOUT}}/projects/PETR/configs/petr_vovnet_gridmask_p4_800x320.py'  # noqa: E501

custom_imports = dict(imports=['projects.PETR.petr', 'mmdet3d_equity'],
                      allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='data/nuscenes/equity_likelihoods.npz',
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [dict(type='EquityHook', loss=dict(
    type='GeneralizedFocalLoss', eta=0.5, gamma=5.0))]
