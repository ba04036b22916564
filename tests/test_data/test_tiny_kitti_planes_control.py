"""Tiny KITTI generator: ground planes (planes/, ``with_plane`` infos) and
the positive control's extra rare frames (``train_rare_factor``)."""
import copy
import hashlib
import json
import os
import os.path as osp

import numpy as np
import pytest

CONTROL = dict(num_frames=40, seed=5, val_fraction=0.5, rare_fraction=0.1,
               val_rare_fraction=0.5)


def _md5(path):
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


def _modes(root):
    with open(osp.join(root, 'frame_modes.json')) as f:
        return json.load(f)


def _build_dataset(cfg):
    from mmengine.registry import init_default_scope

    import mmdet3d_equity  # noqa: F401  (registers + numpy compat shim)
    init_default_scope('mmdet3d')
    from mmdet3d.registry import DATASETS
    return DATASETS.build(cfg)


def test_kitti_ground_plane_files_and_infos(tiny_kitti_root):
    """Every training frame has a KITTI plane file; the infos carry it;
    KittiDataset turns it into the LiDAR plane on which the ground points
    lie (within their noise) and the labelled boxes stand."""
    import mmengine
    from mmdet3d.structures import Box3DMode, CameraInstance3DBoxes

    from equity_tiny_data.kitti import CAM_HEIGHT
    root = tiny_kitti_root
    frames = sorted(os.listdir(osp.join(root, 'training', 'velodyne')))
    planes = sorted(os.listdir(osp.join(root, 'training', 'planes')))
    assert planes == [f[:-4] + '.txt' for f in frames]
    with open(osp.join(root, 'training', 'planes', planes[0])) as f:
        lines = f.read().splitlines()
    assert lines[:3] == ['# Plane', 'Width 4', 'Height 1']
    np.testing.assert_allclose([float(v) for v in lines[3].split()],
                               [0.0, -1.0, 0.0, CAM_HEIGHT])
    info = mmengine.load(osp.join(root, 'kitti_infos_train.pkl'))
    d = info['data_list'][0]
    np.testing.assert_allclose(d['plane'], [0.0, -1.0, 0.0, CAM_HEIGHT])
    ds = _build_dataset(dict(
        type='KittiDataset', data_root=root + '/',
        ann_file='kitti_infos_train.pkl',
        data_prefix=dict(pts='training/velodyne'), pipeline=[],
        metainfo=dict(classes=['Pedestrian', 'Cyclist', 'Car'])))
    lidar_plane = ds.get_data_info(0)['plane']
    assert lidar_plane[2] > 0.99        # normal up in the LiDAR frame
    name = osp.basename(d['lidar_points']['lidar_path'])
    pts = np.fromfile(osp.join(root, 'training', 'velodyne', name),
                      np.float32).reshape(-1, 4)[:, :3]
    height = pts @ lidar_plane[:3] + lidar_plane[3]
    # the densest height bin is the ground, on the plane
    hist, edges = np.histogram(height, bins=np.arange(-0.5, 3.0, 0.05))
    assert abs(edges[hist.argmax()] + 0.025) < 0.05
    lidar2cam = np.asarray(d['images']['CAM2']['lidar2cam'])
    for inst in d['instances']:
        box = CameraInstance3DBoxes(np.asarray([inst['bbox_3d']])).convert_to(
            Box3DMode.LIDAR, np.linalg.inv(lidar2cam)).tensor.numpy()[0]
        assert abs(box[:3] @ lidar_plane[:3] + lidar_plane[3]) < 0.03


def test_kitti_stock_object_sample_with_ground_plane(tiny_kitti_root):
    """The stock PointPillars 3-class pipeline (ObjectSample with
    use_ground_plane=True, which asserts that the info has a plane) runs on
    the tiny layout, and the sampled boxes stand on the ground plane."""
    import mmdet3d
    from mmengine.config import Config
    root = tiny_kitti_root + '/'
    cfg = Config.fromfile(osp.join(
        osp.dirname(mmdet3d.__file__), '.mim', 'configs', 'pointpillars',
        'pointpillars_hv_secfpn_8xb6-160e_kitti-3d-3class.py'))
    pipe = copy.deepcopy(cfg.train_pipeline)
    sample = [t for t in pipe if t['type'] == 'ObjectSample']
    assert sample and sample[0]['use_ground_plane'] is True
    sample[0]['db_sampler']['data_root'] = root
    sample[0]['db_sampler']['info_path'] = root + 'kitti_dbinfos_train.pkl'
    # up to ObjectSample only: the later random transforms move the ground
    pipe = pipe[:[t['type'] for t in pipe].index('ObjectSample') + 1]
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset.dataset)
    # filter_empty_gt=False: the dataset returns the pipeline's dict as is
    ds_cfg.update(data_root=root, pipeline=pipe, filter_empty_gt=False)
    ds = _build_dataset(ds_cfg)
    plane = ds.get_data_info(0)['plane']
    n_before = len(ds.get_data_info(0)['ann_info']['gt_labels_3d'])
    out = ds[0]
    boxes = out['gt_bboxes_3d'].tensor.numpy()
    assert len(boxes) > n_before        # objects were sampled
    bottom = boxes[:, :3] @ plane[:3] + plane[3]
    np.testing.assert_allclose(bottom, 0.0, atol=0.03)


@pytest.mark.slow
def test_kitti_positive_control_keeps_val_split(tmp_path):
    """train_rare_factor=4: four times the rare train frames, the same
    number of train frames, new frames (not repeats), and a byte-identical
    val split (raw files and infos)."""
    import mmengine

    from equity_tiny_data import create_tiny_kitti
    a = create_tiny_kitti(str(tmp_path / 'a'), **CONTROL)
    b = create_tiny_kitti(str(tmp_path / 'b'), train_rare_factor=4,
                          **CONTROL)
    ma, mb = _modes(a['root']), _modes(b['root'])
    assert ma['split'] == mb['split']
    split = ma['split']
    val = [k for k, s in split.items() if s == 'val']
    train = [k for k, s in split.items() if s == 'train']
    assert len(train) == 20 and len(val) == 20

    def fog(m, ids):
        return {k for k in ids if m['modes'][k] == 'fog'}

    assert len(fog(ma, train)) == 2           # round(0.1 * 20)
    assert len(fog(mb, train)) == 4 * 2
    assert fog(ma, train) <= fog(mb, train)
    assert {k: ma['modes'][k] for k in val} == \
        {k: mb['modes'][k] for k in val}
    for sub, ext in (('velodyne', 'bin'), ('velodyne_reduced', 'bin'),
                     ('image_2', 'png'), ('label_2', 'txt'),
                     ('calib', 'txt'), ('planes', 'txt')):
        for k in val:
            name = f'{int(k):06d}.{ext}'
            assert _md5(osp.join(a['root'], 'training', sub, name)) == \
                _md5(osp.join(b['root'], 'training', sub, name)), (sub, k)
    for f in ('ImageSets/val.txt', 'ImageSets/train.txt'):
        assert _md5(osp.join(a['root'], f)) == _md5(osp.join(b['root'], f))
    va = mmengine.load(a['info_val'])['data_list']
    vb = mmengine.load(b['info_val'])['data_list']
    assert [d['sample_idx'] for d in va] == [d['sample_idx'] for d in vb]
    for x, y in zip(va, vb):
        assert [i['bbox_3d'] for i in x['instances']] == \
            [i['bbox_3d'] for i in y['instances']]
        assert [i['num_lidar_pts'] for i in x['instances']] == \
            [i['num_lidar_pts'] for i in y['instances']]

    # the extra fog frames are new data: no point cloud of the control's
    # train split repeats another frame of either dataset
    def clouds(root, ids):
        return [_md5(osp.join(root, 'training', 'velodyne',
                              f'{int(k):06d}.bin')) for k in ids]

    extra = sorted(fog(mb, train) - fog(ma, train))
    new = clouds(b['root'], extra)
    assert len(set(new)) == len(new)
    assert not set(new) & set(clouds(a['root'], train + val))
    assert b['summary']['modes']['fog'] == a['summary']['modes']['fog'] + 6


@pytest.mark.parametrize('kwargs, message', [
    (dict(train_rare_factor=0, rare_fraction=0.1, val_rare_fraction=0.5),
     'train_rare_factor must be an int >= 1'),
    (dict(train_rare_factor=2.0, rare_fraction=0.1, val_rare_fraction=0.5),
     'train_rare_factor must be an int >= 1'),
    (dict(train_rare_factor=4), 'train_rare_factor needs rare_fraction'),
    (dict(train_rare_factor=20, rare_fraction=0.1, val_rare_fraction=0.5),
     r'rare share 0.1 \(x 20\) leaves no day frame'),
])
def test_kitti_positive_control_bad_factor(tmp_path, kwargs, message):
    from equity_tiny_data import create_tiny_kitti
    with pytest.raises(ValueError, match=message):
        create_tiny_kitti(str(tmp_path / 'x'), num_frames=40,
                          val_fraction=0.5, **kwargs)
    assert not osp.exists(tmp_path / 'x')
