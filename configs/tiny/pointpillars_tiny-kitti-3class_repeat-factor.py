# Repeat-factor sampling of rare-looking frames on the tiny PointPillars /
# tiny KITTI CPU config (mmdet3d_equity/datasets/equity_repeat_sampler.py):
# every train frame is repeated r_i = max(1, sqrt(t / p_i)) times an epoch
# (LVIS repeat-factor sampling, mmengine's ClassBalancedDataset, applied to
# the appearance likelihood p_i instead of class frequencies), t = 0.5 (the
# documented default: frames less than half as common as the most common
# appearance are repeated). No loss weighting, no EquityHook. Same
# likelihood file as the _equity config.
# EquitySamplingHook saves the sampler's settings and the likelihood
# file's content in the checkpoints and refuses a resume that changes them.
_base_ = './pointpillars_tiny-kitti-3class.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(
    sampler=dict(_delete_=True, type='EquityRepeatFactorSampler',
                 threshold=0.5),
    dataset=dict(
        _delete_=True, type='EquityDataset',
        likelihood_file='{{$EQUITY_TINY_KITTI:data/tiny_kitti}}/equity_likelihoods.npz',  # noqa: E501
        dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [dict(type='EquitySamplingHook')]
