# Testbed trial (docs/testbed.md): 0.16 m pillars (as stock PointPillars), the
# stride-2 feature map then has 0.32 m anchors.
_base_ = './pp_w64_s2.py'
voxel_size = [0.16, 0.16, 4]
point_cloud_range = [0, -20.48, -3, 40.96, 20.48, 1]
model = dict(
    data_preprocessor=dict(voxel_layer=dict(voxel_size=voxel_size,
                                            max_voxels=(12000, 16000))),
    voxel_encoder=dict(voxel_size=voxel_size),
    middle_encoder=dict(output_shape=[256, 256]))
