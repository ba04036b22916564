"""Model configs shared by several tests."""


def _center_head_cfg(loss_cls):
    voxel = [0.8, 0.8, 8]
    return dict(
        type='CenterHead', in_channels=16,
        tasks=[dict(num_class=1, class_names=['car']),
               dict(num_class=2, class_names=['truck', 'bus'])],
        common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2),
                          rot=(2, 2), vel=(2, 2)),
        share_conv_channel=8,
        bbox_coder=dict(type='CenterPointBBoxCoder',
                        post_center_range=[-30, -30, -10, 30, 30, 10],
                        pc_range=[-25.6, -25.6], max_num=50,
                        score_threshold=0.1, out_size_factor=2,
                        voxel_size=voxel[:2], code_size=9),
        separate_head=dict(type='SeparateHead', init_bias=-2.19,
                           final_kernel=3),
        loss_cls=loss_cls,
        loss_bbox=dict(type='mmdet.L1Loss', reduction='mean',
                       loss_weight=0.25),
        norm_bbox=True,
        train_cfg=dict(grid_size=[64, 64, 1], voxel_size=voxel,
                       out_size_factor=2, dense_reg=1, gaussian_overlap=0.1,
                       max_objs=50, min_radius=2,
                       code_weights=[1.0] * 8 + [0.2, 0.2],
                       point_cloud_range=[-25.6, -25.6, -5, 25.6, 25.6, 3]))
