# DatasetEquity in the resampling mode on the tiny PointPillars / tiny KITTI
# CPU config: instead of weighting each sample's loss (EquityHook), every
# index is drawn with probability W(p) / sum W (with replacement), which is
# the W-weighted loss divided by its mean in expectation. For heads whose
# loss cannot be weighted exactly per sample. The sampler owns eta and gamma
# (--cfg-options train_dataloader.sampler.loss.eta=0.3); there is no
# EquityHook. Same likelihood file as the _equity config.
# EquitySamplingHook saves the sampler's settings and the likelihood
# file's content in the checkpoints and refuses a resume that changes them.
_base_ = './pointpillars_tiny-kitti-3class.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='EquityWeightedSampler',
        loss=dict(type='GeneralizedFocalLoss', eta=1.0, gamma=5.0,
                  normalisation='dataset')),
    dataset=dict(
        _delete_=True, type='EquityDataset',
        likelihood_file='{{$EQUITY_TINY_KITTI:data/tiny_kitti}}/equity_likelihoods.npz',  # noqa: E501
        dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [dict(type='EquitySamplingHook')]
