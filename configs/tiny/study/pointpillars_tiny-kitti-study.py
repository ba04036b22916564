# The efficacy study's baseline (docs/efficacy.md, tools/efficacy_study.py):
# the tiny PointPillars on the study's tiny KITTI dataset, where the rare
# 'fog' mode is rare in train (6 %) and enriched in val (50 %). The study sets
# EQUITY_TINY_KITTI (default data/tiny_kitti_study) for every run.
# Half the channels of the tiny PointPillars (backbone 16/32/64, neck 3 x 32):
# sized so that the whole study (36 trainings + tests, two single-thread jobs
# side by side) runs in about an hour on 2 cores; measured on one seed,
# it scores like the full-width model (whole-split Car dense AP 15.6 vs 14.9)
# at 0.41 instead of 0.56 s per iteration.
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
model = dict(
    backbone=dict(out_channels=[16, 32, 64]),
    neck=dict(in_channels=[16, 32, 64], out_channels=[32, 32, 32]),
    bbox_head=dict(in_channels=96, feat_channels=96))
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
