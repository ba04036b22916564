# Testbed trial (docs/testbed.md): the full-width tiny PointPillars, anchors on
# the 0.64 m grid of the stride-2 feature map (as configs/tiny/).
_base_ = '../pointpillars_tiny-kitti-3class.py'
val_cfg = None
val_dataloader = None
val_evaluator = None
