# The efficacy study's baseline (docs/efficacy.md, tools/efficacy_study.py):
# the tiny PointPillars on the study's tiny KITTI dataset, where the rare
# 'fog' mode is rare in train (6 %) and enriched in val (50 %). The study sets
# EQUITY_TINY_KITTI (default data/tiny_kitti_study) for every run.
# 10 epochs of the 128 train frames (320 iterations); no validation during
# training (val_cfg None: MMEngine would validate at the last epoch); the
# test evaluates KittiMetric on the whole val split, on the
# planted modes (fog / dusk / day) and on the appearance-likelihood bins of
# the val frames scored against the training clustering (rare / medium /
# common), with the stock and the dense AP40 (docs/slices.md).
_base_ = '../pointpillars_tiny-kitti-3class.py'

study_root = '{{$EQUITY_TINY_KITTI:data/tiny_kitti_study}}/'
lr = 0.003
epochs = 10
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', T_max=epochs, eta_min=lr * 0.1, begin=0,
         end=epochs, by_epoch=True, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=epochs)
default_hooks = dict(checkpoint=dict(interval=epochs))
val_cfg = None
val_dataloader = None
val_evaluator = None
test_evaluator = dict(
    _delete_=True,
    type='SliceMetric',
    metric=dict(type='KittiCPUMetric',
                ann_file=study_root + 'kitti_infos_val.pkl', metric='bbox'),
    slices=[
        dict(type='SliceFile', path=study_root + 'frame_modes.json'),
        dict(type='LikelihoodSlices',
             path=study_root + 'equity_likelihoods_val.npz'),
    ])
