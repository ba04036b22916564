# The study's repeat-factor arm: train frames repeated r_i = max(1,
# sqrt(t / p_i)) times an epoch (EquityRepeatFactorSampler, the LVIS /
# ClassBalancedDataset rule on the appearance likelihood), t = 0.5, no loss
# weighting. The epoch grows to ceil(sum r_i) draws (the schedule is in
# epochs, so this arm trains more iterations than the baseline).
_base_ = './pointpillars_tiny-kitti-study.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(
    sampler=dict(_delete_=True, type='EquityRepeatFactorSampler',
                 threshold=0.5),
    dataset=dict(
        _delete_=True, type='EquityDataset',
        likelihood_file='{{$EQUITY_TINY_KITTI:data/tiny_kitti_study}}/equity_likelihoods.npz',  # noqa: E501
        dataset={{_base_.train_dataloader.dataset}}))
