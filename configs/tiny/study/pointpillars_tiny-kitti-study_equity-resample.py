# The study's resampling arm: training frames drawn with probability
# proportional to W(p) (eta 1, gamma 5), no loss weighting.
_base_ = './pointpillars_tiny-kitti-study.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='EquityWeightedSampler',
        loss=dict(type='GeneralizedFocalLoss', eta=1.0, gamma=5.0,
                  normalisation='dataset')),
    dataset=dict(
        _delete_=True, type='EquityDataset',
        likelihood_file='{{$EQUITY_TINY_KITTI:data/tiny_kitti_study}}/equity_likelihoods.npz',  # noqa: E501
        dataset={{_base_.train_dataloader.dataset}}))
