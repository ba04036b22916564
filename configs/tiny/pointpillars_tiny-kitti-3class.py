# A reduced PointPillars (3 classes) for the tiny synthetic KITTI dataset
# (`python tools/create_tiny_dataset.py kitti --out data/tiny_kitti`).
# Runs on CPU in minutes: smaller range (41 m x 41 m), 0.32 m pillars, a
# narrower backbone, a short schedule. Evaluates with KittiMetric's values on
# the whole val split and on the frame modes (SliceMetric, docs/slices.md).
# The data root can be moved with the environment variable EQUITY_TINY_KITTI.
_base_ = 'mmdet3d::pointpillars/pointpillars_hv_secfpn_8xb6-160e_kitti-3d-3class.py'  # noqa: E501

data_root = '{{$EQUITY_TINY_KITTI:data/tiny_kitti}}/'
class_names = ['Pedestrian', 'Cyclist', 'Car']
metainfo = dict(classes=class_names)
point_cloud_range = [0, -20.48, -3, 40.96, 20.48, 1]
voxel_size = [0.32, 0.32, 4]
backend_args = None

db_sampler = dict(
    data_root=data_root,
    info_path=data_root + 'kitti_dbinfos_train.pkl',
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

train_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4,
         use_dim=4, backend_args=backend_args),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ObjectSample', db_sampler=db_sampler, use_ground_plane=False),
    dict(type='RandomFlip3D', flip_ratio_bev_horizontal=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.3, 0.3],
         scale_ratio_range=[0.95, 1.05]),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='PointShuffle'),
    dict(type='Pack3DDetInputs',
         keys=['points', 'gt_labels_3d', 'gt_bboxes_3d'])
]
test_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4,
         use_dim=4, backend_args=backend_args),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='Pack3DDetInputs', keys=['points'])
]

train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='RepeatDataset',
        times=1,
        dataset=dict(
            type='KittiDataset',
            data_root=data_root,
            ann_file='kitti_infos_train.pkl',
            data_prefix=dict(pts='training/velodyne_reduced'),
            pipeline=train_pipeline,
            modality=dict(use_lidar=True, use_camera=False),
            test_mode=False,
            metainfo=metainfo,
            box_type_3d='LiDAR',
            backend_args=backend_args)))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        ann_file='kitti_infos_val.pkl',
        pipeline=test_pipeline,
        metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
    type='SliceMetric',
    metric=dict(type='KittiCPUMetric', ann_file=data_root +
                'kitti_infos_val.pkl', metric='bbox',
                backend_args=backend_args),
    slices=[dict(type='SliceFile', path=data_root + 'frame_modes.json')])
test_evaluator = val_evaluator

model = dict(
    data_preprocessor=dict(
        voxel_layer=dict(
            max_num_points=20,
            point_cloud_range=point_cloud_range,
            voxel_size=voxel_size,
            max_voxels=(6000, 8000))),
    voxel_encoder=dict(
        feat_channels=[32],
        voxel_size=voxel_size,
        point_cloud_range=point_cloud_range),
    middle_encoder=dict(in_channels=32, output_shape=[128, 128]),
    backbone=dict(
        in_channels=32,
        layer_nums=[1, 2, 2],
        layer_strides=[2, 2, 2],
        out_channels=[32, 64, 128]),
    neck=dict(
        in_channels=[32, 64, 128],
        upsample_strides=[1, 2, 4],
        out_channels=[64, 64, 64]),
    bbox_head=dict(
        in_channels=192,
        feat_channels=192,
        anchor_generator=dict(ranges=[
            [0, -20.48, -0.6, 40.96, 20.48, -0.6],
            [0, -20.48, -0.6, 40.96, 20.48, -0.6],
            [0, -20.48, -1.78, 40.96, 20.48, -1.78],
        ])),
    test_cfg=dict(nms_pre=100, max_num=50, score_thr=0.05))

# A short schedule: 20 epochs of the 48 tiny train frames (240 iterations,
# about 1.5 minutes on 2 CPU cores), evaluated at the end. Enough for the
# Car class to be learnt (3D AP40 at IoU 0.5 around 25 on the tiny val split).
lr = 0.003
epochs = 20
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', T_max=epochs, eta_min=lr * 0.1, begin=0,
         end=epochs, by_epoch=True, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=epochs)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='CheckpointHook', interval=epochs, max_keep_ckpts=1),
    visualization=dict(type='Det3DVisualizationHook', draw=False))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
# the evaluation log line holds the whole-split keys; the slice keys are in
# SliceMetric's table, the metrics JSON and TensorBoard (docs/slices.md)
log_processor = dict(type='SliceLogProcessor', window_size=5)
randomness = dict(seed=0)
