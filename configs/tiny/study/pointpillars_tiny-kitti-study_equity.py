# The study's DatasetEquity arm as published: Generalized Focal Loss with
# eta 1, gamma 5 on the scorer's likelihoods. Other arms override one key:
# custom_hooks.0.loss.eta / .gamma / .normalisation,
# train_dataloader.dataset.likelihood_file (e.g. the oracle file).
_base_ = './pointpillars_tiny-kitti-study.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='{{$EQUITY_TINY_KITTI:data/tiny_kitti_study}}/equity_likelihoods.npz',  # noqa: E501
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [dict(type='EquityHook', loss=dict(
    type='GeneralizedFocalLoss', eta=1.0, gamma=5.0))]
