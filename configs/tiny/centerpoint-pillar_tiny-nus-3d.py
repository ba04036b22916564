# A reduced CenterPoint-pillar for the tiny synthetic nuScenes dataset
# (`python tools/create_tiny_dataset.py nuscenes --out data/tiny_nuscenes`).
# CPU-runnable: 0.8 m pillars (128 x 128 grid), a narrower backbone, the three
# classes the tiny dataset has (car, bicycle, pedestrian) in two tasks, a
# short schedule. Evaluates with NuScenesMetric (v1.0-mini tables) on the
# whole val split and on slices (SliceMetric, docs/slices.md).
# The data root can be moved with the environment variable EQUITY_TINY_NUS.
_base_ = 'mmdet3d::centerpoint/centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d.py'  # noqa: E501

data_root = '{{$EQUITY_TINY_NUS:data/tiny_nuscenes}}/'
class_names = ['car', 'bicycle', 'pedestrian']
# NuScenesDataset's class METAINFO says v1.0-trainval and wins over the info
# file's version, so NuScenesMetric needs the mini version named here.
metainfo = dict(classes=class_names, version='v1.0-mini')
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
voxel_size = [0.8, 0.8, 8]
data_prefix = dict(pts='samples/LIDAR_TOP', img='', sweeps='sweeps/LIDAR_TOP')
backend_args = None

db_sampler = dict(
    data_root=data_root,
    info_path=data_root + 'nuscenes_dbinfos_train.pkl',
    rate=1.0,
    prepare=dict(
        filter_by_difficulty=[-1],
        filter_by_min_points=dict(car=5, bicycle=5, pedestrian=5)),
    classes=class_names,
    sample_groups=dict(car=2, bicycle=4, pedestrian=2),
    points_loader=dict(
        type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5,
        use_dim=[0, 1, 2, 3, 4], backend_args=backend_args),
    backend_args=backend_args)

train_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5,
         use_dim=5, backend_args=backend_args),
    dict(type='LoadPointsFromMultiSweeps', sweeps_num=9,
         use_dim=[0, 1, 2, 3, 4], pad_empty_sweeps=True, remove_close=True,
         backend_args=backend_args),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ObjectSample', db_sampler=db_sampler),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.3925, 0.3925],
         scale_ratio_range=[0.95, 1.05], translation_std=[0, 0, 0]),
    dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5,
         flip_ratio_bev_vertical=0.5),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectNameFilter', classes=class_names),
    dict(type='PointShuffle'),
    dict(type='Pack3DDetInputs',
         keys=['points', 'gt_bboxes_3d', 'gt_labels_3d'])
]
test_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5,
         use_dim=5, backend_args=backend_args),
    dict(type='LoadPointsFromMultiSweeps', sweeps_num=9,
         use_dim=[0, 1, 2, 3, 4], pad_empty_sweeps=True, remove_close=True,
         backend_args=backend_args),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='Pack3DDetInputs', keys=['points'])
]

train_dataloader = dict(
    _delete_=True,
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CBGSDataset',
        dataset=dict(
            type='NuScenesDataset',
            data_root=data_root,
            ann_file='nuscenes_infos_train.pkl',
            pipeline=train_pipeline,
            metainfo=metainfo,
            test_mode=False,
            data_prefix=data_prefix,
            use_valid_flag=True,
            box_type_3d='LiDAR',
            backend_args=backend_args)))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        ann_file='nuscenes_infos_val.pkl',
        pipeline=test_pipeline,
        metainfo=metainfo,
        data_prefix=data_prefix))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
    type='SliceMetric',
    metric=dict(type='NuScenesMetric', data_root=data_root,
                ann_file=data_root + 'nuscenes_infos_val.pkl', metric='bbox',
                backend_args=backend_args),
    slices=[dict(type='SliceFile', path=data_root + 'frame_modes.json'),
            dict(type='SceneDescriptionSlices', data_root=data_root,
                 version='v1.0-mini', prefix='scene_')],
    groups='lt3d')
test_evaluator = val_evaluator

model = dict(
    data_preprocessor=dict(
        voxel_layer=dict(
            max_num_points=20, voxel_size=voxel_size,
            point_cloud_range=point_cloud_range, max_voxels=(8000, 10000))),
    pts_voxel_encoder=dict(
        feat_channels=[32], voxel_size=voxel_size,
        point_cloud_range=point_cloud_range),
    pts_middle_encoder=dict(in_channels=32, output_shape=(128, 128)),
    pts_backbone=dict(
        in_channels=32, out_channels=[32, 64, 128], layer_nums=[1, 2, 2]),
    pts_neck=dict(in_channels=[32, 64, 128], out_channels=[64, 64, 64]),
    pts_bbox_head=dict(
        in_channels=192,
        tasks=[
            dict(num_class=1, class_names=['car']),
            dict(num_class=2, class_names=['bicycle', 'pedestrian']),
        ],
        share_conv_channel=32,
        bbox_coder=dict(pc_range=point_cloud_range[:2],
                        voxel_size=voxel_size[:2])),
    train_cfg=dict(pts=dict(
        grid_size=[128, 128, 1], voxel_size=voxel_size,
        point_cloud_range=point_cloud_range)),
    test_cfg=dict(pts=dict(
        voxel_size=voxel_size[:2], pc_range=point_cloud_range[:2],
        min_radius=[4, 0.85])))

lr = 0.002
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', T_max=2, eta_min=lr * 0.1, begin=0,
         end=2, by_epoch=True, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=2)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=1),
    visualization=dict(type='Det3DVisualizationHook', draw=False))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
# the evaluation log line holds the whole-split keys; the slice keys are in
# SliceMetric's table, the metrics JSON and TensorBoard (docs/slices.md)
log_processor = dict(type='SliceLogProcessor', window_size=5)
randomness = dict(seed=0)
