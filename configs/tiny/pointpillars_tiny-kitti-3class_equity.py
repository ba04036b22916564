# DatasetEquity on the tiny PointPillars / tiny KITTI CPU config: the lines
# below the _base_ are the whole difference to the baseline.
# The likelihood file lives next to the tiny data (EQUITY_TINY_KITTI, as in
# the base config); create it with
#   python tools/compute_likelihoods.py \
#       configs/tiny/pointpillars_tiny-kitti-3class_equity.py \
#       --out data/tiny_kitti/equity_likelihoods.npz
# or point to another file with
#   --cfg-options train_dataloader.dataset.likelihood_file=PATH
_base_ = './pointpillars_tiny-kitti-3class.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
likelihood_file = '{{$EQUITY_TINY_KITTI:data/tiny_kitti}}/equity_likelihoods.npz'  # noqa: E501
equity_eta, equity_gamma = 1.0, 5.0
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset', likelihood_file=likelihood_file,
    eta=equity_eta, gamma=equity_gamma,
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [dict(type='EquityHook', loss=dict(
    type='GeneralizedFocalLoss', eta=equity_eta, gamma=equity_gamma))]
