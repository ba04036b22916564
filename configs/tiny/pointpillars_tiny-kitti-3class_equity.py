# DatasetEquity on the tiny PointPillars / tiny KITTI CPU config: the lines
# below the _base_ are the whole difference to the baseline.
# The likelihood file lives next to the tiny data (EQUITY_TINY_KITTI, as in
# the base config); create it with
#   python tools/compute_likelihoods.py \
#       configs/tiny/pointpillars_tiny-kitti-3class_equity.py \
#       --out data/tiny_kitti/equity_likelihoods.npz
# Each setting is written once and can be overridden at its key, e.g.
#   --cfg-options train_dataloader.dataset.likelihood_file=PATH \
#       custom_hooks.0.loss.eta=0.3
_base_ = './pointpillars_tiny-kitti-3class.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='{{$EQUITY_TINY_KITTI:data/tiny_kitti}}/equity_likelihoods.npz',  # noqa: E501
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [dict(type='EquityHook', loss=dict(
    type='GeneralizedFocalLoss', eta=1.0, gamma=5.0))]
