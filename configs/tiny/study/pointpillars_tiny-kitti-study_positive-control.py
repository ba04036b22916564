# The study's positive control: the baseline trained on a dataset with the
# same number of train frames but four times as many (new, not repeated)
# fog frames (equity_tiny_data create_tiny_kitti(train_rare_factor=4), the
# same seed: the val split is byte-identical to the study's). It answers
# "can this testbed show a fog gain at all?". The train split (infos, GT
# database) comes from EQUITY_TINY_KITTI_CONTROL; the test uses the study's
# val split and slices (EQUITY_TINY_KITTI), as every arm.
_base_ = './pointpillars_tiny-kitti-study.py'

control_root = '{{$EQUITY_TINY_KITTI_CONTROL:data/tiny_kitti_study_control}}/'  # noqa: E501
backend_args = None
class_names = ['Pedestrian', 'Cyclist', 'Car']
point_cloud_range = [0, -20.48, -3, 40.96, 20.48, 1]
control_db_sampler = dict(
    data_root=control_root,
    info_path=control_root + 'kitti_dbinfos_train.pkl',
    rate=1.0,
    prepare=dict(
        filter_by_difficulty=[-1],
        filter_by_min_points=dict(Car=5, Pedestrian=5, Cyclist=5)),
    classes=class_names,
    sample_groups=dict(Car=4, Pedestrian=4, Cyclist=4),
    points_loader=dict(
        type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4,
        backend_args=backend_args),
    backend_args=backend_args)
control_train_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4,
         use_dim=4, backend_args=backend_args),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ObjectSample', db_sampler=control_db_sampler,
         use_ground_plane=False),
    dict(type='RandomFlip3D', flip_ratio_bev_horizontal=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.3, 0.3],
         scale_ratio_range=[0.95, 1.05]),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='PointShuffle'),
    dict(type='Pack3DDetInputs',
         keys=['points', 'gt_labels_3d', 'gt_bboxes_3d'])
]
train_dataloader = dict(dataset=dict(dataset=dict(
    data_root=control_root, pipeline=control_train_pipeline)))
