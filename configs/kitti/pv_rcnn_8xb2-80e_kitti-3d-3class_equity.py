# DatasetEquity on top of the stock mmdet3d PV-RCNN config: the RPN
# (PartA2RPNHead), the keypoint segmentation loss and the RoI box losses
# weighted per sample (sparse convolutions and point ops need a GPU).
# Only the lines below the _base_ differ from the baseline.
# The likelihood file is written by
#   python tools/compute_likelihoods.py THIS_CONFIG \
#       --out data/kitti/equity_likelihoods.npz
_base_ = 'mmdet3d::pv_rcnn/pv_rcnn_8xb2-80e_kitti-3d-3class.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='data/kitti/equity_likelihoods.npz',
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [dict(type='EquityHook', loss=dict(
    type='GeneralizedFocalLoss', eta=1.0, gamma=5.0))]
