# Testbed trial (docs/testbed.md): stride-1 anchors (pp_w64_s1) with a
# narrower neck (3 x 32 channels, head 96).
_base_ = './pp_w64_s1.py'
model = dict(
    neck=dict(out_channels=[32, 32, 32]),
    bbox_head=dict(in_channels=96, feat_channels=96))
