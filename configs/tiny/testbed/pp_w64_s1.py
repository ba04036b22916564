# Testbed trial (docs/testbed.md): the neck upsamples to stride 1 of the
# 0.32 m pillars, so anchors lie on a 0.32 m grid (Pedestrian: 95 % of the
# objects get an anchor over the assigner's 0.5 IoU, 26 % on the 0.64 m grid).
_base_ = './pp_w64_s2.py'
model = dict(
    middle_encoder=dict(output_shape=[128, 128]),
    neck=dict(upsample_strides=[2, 4, 8]))
