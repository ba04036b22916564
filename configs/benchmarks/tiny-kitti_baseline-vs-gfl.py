# A benchmark spec (python tools/compare_arms.py --spec THIS_FILE): the
# baseline against DatasetEquity as published, with dataset normalisation,
# and with a smaller eta, on the tiny KITTI dataset of the README's quick start
# (python tools/create_tiny_dataset.py kitti --out data/tiny_kitti --frames 64
# --rare-fraction 0.1 --val-rare-fraction 0.5: fog is rare in train, half of
# the val frames, so the fog endpoint has enough Cars to measure; then
# python tools/compute_likelihoods.py configs/tiny/pointpillars_tiny-kitti-
# 3class.py --out data/tiny_kitti/equity_likelihoods.npz). Format:
# docs/benchmark.md.
description = 'DatasetEquity on tiny KITTI (README quick-start data)'
env = dict(EQUITY_TINY_KITTI='data/tiny_kitti')  # set before configs load
seeds = [0, 1, 2]
metric = '3D_AP40_moderate_loose'
train_slices = 'data/tiny_kitti/frame_modes.json'  # weight diagnostics
baseline = dict(name='baseline',
                config='configs/tiny/pointpillars_tiny-kitti-3class.py')
arms = [
    dict(name='gfl',
         config='configs/tiny/pointpillars_tiny-kitti-3class_equity.py',
         description='GFL eta 1, gamma 5 (published setting)'),
    dict(name='gfl_norm',
         config='configs/tiny/pointpillars_tiny-kitti-3class_equity.py',
         cfg_options={'custom_hooks.0.loss.normalisation': 'dataset'},
         description='the same, weights divided by their training mean'),
    dict(name='gfl_eta0.3',
         config='configs/tiny/pointpillars_tiny-kitti-3class_equity.py',
         cfg_options={'custom_hooks.0.loss.eta': 0.3},
         description='GFL eta 0.3, gamma 5'),
]
primary = [dict(slice='fog', variant='dense', row='Car')]  # shown first
