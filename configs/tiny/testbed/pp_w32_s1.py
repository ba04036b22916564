# Testbed trial (docs/testbed.md): stride-1 anchors, half-width backbone
# (16/32/64) and neck (3 x 32).
_base_ = './pp_w64n32_s1.py'
model = dict(
    backbone=dict(out_channels=[16, 32, 64]),
    neck=dict(in_channels=[16, 32, 64]))
