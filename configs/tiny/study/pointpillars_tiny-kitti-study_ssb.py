# The study's SSB arm: dynamic semantic-scale-balanced class weights; plain
# loss for the first 3 of 10 epochs (96 iterations), then class weights
# re-estimated every epoch (32 iterations).
_base_ = './pointpillars_tiny-kitti-study.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
custom_hooks = [
    dict(type='SemanticScaleBalanceHook', warmup_iters=96, interval=32)
]
