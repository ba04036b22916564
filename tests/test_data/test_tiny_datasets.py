"""Synthetic tiny KITTI / nuScenes datasets (equity_tiny_data)."""
import copy
import hashlib
import json
import os
import os.path as osp

import numpy as np
import pytest


def _stock_cfg(name):
    import mmdet3d
    from mmengine.config import Config
    return Config.fromfile(
        osp.join(osp.dirname(mmdet3d.__file__), '.mim', 'configs', '_base_',
                 'datasets', name))


def _build(cfg):
    from mmengine.registry import init_default_scope

    import mmdet3d_equity  # noqa: F401  (registers + numpy compat shim)
    init_default_scope('mmdet3d')
    from mmdet3d.registry import DATASETS
    return DATASETS.build(cfg)


def _modes(root):
    with open(osp.join(root, 'frame_modes.json')) as f:
        return json.load(f)


def _paint_ok(bgr, name):
    b, g, r = [float(v) for v in bgr]
    if name in ('Car', 'car'):
        return r > b + 50 and r > g + 50
    if name in ('Pedestrian', 'pedestrian'):
        return b > r + 40
    raise ValueError(name)


# --------------------------------------------------------------------------
# KITTI
# --------------------------------------------------------------------------
def test_kitti_layout(tiny_kitti_root):
    root = tiny_kitti_root
    for sub in ('velodyne', 'velodyne_reduced', 'image_2', 'calib',
                'label_2'):
        assert len(os.listdir(osp.join(root, 'training', sub))) == 64, sub
    for f in ('ImageSets/train.txt', 'ImageSets/val.txt',
              'kitti_infos_train.pkl', 'kitti_infos_val.pkl',
              'kitti_dbinfos_train.pkl', 'frame_modes.json'):
        assert osp.isfile(osp.join(root, f)), f
    assert len(os.listdir(osp.join(root, 'kitti_gt_database'))) > 100
    import mmengine
    info = mmengine.load(osp.join(root, 'kitti_infos_train.pkl'))
    assert info['metainfo']['dataset'] == 'kitti'
    assert info['metainfo']['info_version'] == '1.1'
    m = _modes(root)
    assert m['dataset'] == 'kitti'
    ids = {str(d['sample_idx']) for d in info['data_list']}
    assert ids == {k for k, v in m['split'].items() if v == 'train'}


def test_kitti_stock_pipeline_with_object_sample(tiny_kitti_root):
    root = tiny_kitti_root + '/'
    cfg = _stock_cfg('kitti-3d-3class.py')
    # stock pipeline minus ObjectNoise, whose numba kernels take ~30 s to
    # JIT-compile on first use (unrelated to the data)
    pipe = [t for t in copy.deepcopy(cfg.train_pipeline)
            if t['type'] != 'ObjectNoise']
    for t in pipe:
        if t['type'] == 'ObjectSample':
            t['db_sampler']['data_root'] = root
            t['db_sampler']['info_path'] = root + 'kitti_dbinfos_train.pkl'
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset.dataset)
    ds_cfg.update(data_root=root, pipeline=pipe)
    ds = _build(ds_cfg)
    assert len(ds) == 48
    for i in range(2):
        out = ds[i]
        pts = out['inputs']['points']
        gt = out['data_samples'].gt_instances_3d
        assert pts.shape[1] == 4 and pts.shape[0] > 1000
        assert len(gt.bboxes_3d) == len(gt.labels_3d) > 0
        assert set(gt.labels_3d.tolist()) <= {0, 1, 2}


def test_kitti_boxes_project_onto_drawn_objects(tiny_kitti_root):
    """Box centres, projected with the info calibration, fall inside the
    image and inside the 2D box, on a pixel painted with the class colour."""
    import cv2
    import mmengine
    from mmdet3d.structures import Box3DMode, CameraInstance3DBoxes
    root = tiny_kitti_root
    modes = _modes(root)['modes']
    info = mmengine.load(osp.join(root, 'kitti_infos_train.pkl'))
    classes = {v: k for k, v in info['metainfo']['categories'].items()}
    checked = ok = 0
    for d in info['data_list'][:24]:
        cam = d['images']['CAM2']
        img = cv2.imread(osp.join(root, 'training', 'image_2',
                                  cam['img_path']))
        assert img.shape[:2] == (cam['height'], cam['width']) == (375, 1242)
        if modes[str(d['sample_idx'])] != 'day':
            continue
        lidar2img = np.asarray(cam['lidar2img'])
        lidar2cam = np.asarray(cam['lidar2cam'])
        for inst in d['instances']:
            box = CameraInstance3DBoxes(np.asarray([inst['bbox_3d']]))
            lidar = box.convert_to(
                Box3DMode.LIDAR, np.linalg.inv(lidar2cam)).tensor.numpy()[0]
            centre = lidar[:3] + np.array([0, 0, 0.3 * lidar[5]])
            uvw = lidar2img @ np.append(centre, 1.0)
            u, v = uvw[:2] / uvw[2]
            x1, y1, x2, y2 = inst['bbox']
            assert 0 <= u < 1242 and 0 <= v < 375
            assert x1 - 2 <= u <= x2 + 2 and y1 - 2 <= v <= y2 + 2
            name = classes[inst['bbox_label_3d']]
            if inst['occluded'] == 0 and name in ('Car', 'Pedestrian'):
                checked += 1
                ok += _paint_ok(img[int(v), int(u)], name)
    assert checked >= 30
    assert ok >= 0.85 * checked, (ok, checked)


def test_kitti_class_imbalance(tiny_kitti_root):
    import mmengine
    info = mmengine.load(osp.join(tiny_kitti_root, 'kitti_infos_train.pkl'))
    cats = info['metainfo']['categories']
    labels = [i['bbox_label_3d'] for d in info['data_list']
              for i in d['instances']]
    from equity_tiny_data.kitti import CLASS_PROBS, CLASSES
    n = {c: labels.count(cats[c]) for c in CLASSES}
    assert n['Car'] > n['Pedestrian'] > n['Cyclist'] > 0, n
    # the drawn class ratios survive the placement (a slot keeps its class
    # until it is placed); ~300 objects: binomial sd of a share < 0.03
    for c, prob in zip(CLASSES, CLASS_PROBS):
        assert abs(n[c] / sum(n.values()) - prob) < 0.1, n


def _frame_stats_kitti(root, idx):
    import cv2
    img = cv2.imread(osp.join(root, 'training', 'image_2', f'{idx:06d}.png'))
    pts = np.fromfile(osp.join(root, 'training', 'velodyne',
                               f'{idx:06d}.bin'), np.float32).reshape(-1, 4)
    return img.mean(), img.std(), len(pts), pts[:, 3].mean()


def test_kitti_rare_mode(tiny_kitti_root):
    m = _modes(tiny_kitti_root)
    assert m['rare_mode'] == 'fog'
    rare = [int(k) for k, v in m['modes'].items() if v == 'fog']
    day = [int(k) for k, v in m['modes'].items() if v == 'day']
    assert len(rare) == 5  # round(0.08 * 64)
    assert 0.05 <= len(rare) / 64 <= 0.10
    assert any(m['split'][str(i)] == 'train' for i in rare)
    r = np.array([_frame_stats_kitti(tiny_kitti_root, i) for i in rare])
    d = np.array([_frame_stats_kitti(tiny_kitti_root, i) for i in day[:10]])
    assert r[:, 0].mean() > d[:, 0].mean() + 25      # brighter (haze)
    assert r[:, 1].mean() < 0.7 * d[:, 1].mean()     # lower contrast
    assert r[:, 2].mean() < 0.85 * d[:, 2].mean()    # fewer points
    assert r[:, 3].mean() < 0.7 * d[:, 3].mean()     # weaker returns


def _digest(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = osp.join(d, f)
            with open(p, 'rb') as fh:
                out[osp.relpath(p, root)] = hashlib.md5(
                    fh.read()).hexdigest()
    return out


@pytest.mark.slow
def test_kitti_seed_determinism_and_overwrite(tmp_path, tiny_kitti_root):
    from equity_tiny_data import create_tiny_kitti
    a = create_tiny_kitti(str(tmp_path / 'a'), num_frames=16, seed=3)
    da = _digest(a['root'])
    with pytest.raises(FileExistsError, match='overwrite'):
        create_tiny_kitti(a['root'], num_frames=16, seed=3)
    # same seed, rebuilt in place (atomic replace): byte-identical files
    b = create_tiny_kitti(a['root'], num_frames=16, seed=3, overwrite=True)
    assert _digest(b['root']) == da
    assert [p for p in os.listdir(tmp_path) if p.startswith('.')] == []
    # different seed (the seed-0 fixture): every frame's data differs
    d0 = _digest(tiny_kitti_root)
    # calib: the same fixed KITTI rig; planes: the same flat ground
    data = [k for k in da if k.startswith('training/')
            and '/calib/' not in k and '/planes/' not in k]
    assert len(data) == 16 * 4  # velodyne(_reduced), image_2, label_2
    assert all(da[k] != d0[k] for k in data)


# --------------------------------------------------------------------------
# nuScenes
# --------------------------------------------------------------------------
CAMS = ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK',
        'CAM_BACK_LEFT', 'CAM_BACK_RIGHT')


def test_nus_layout_and_infos(tiny_nus_root):
    import mmengine
    root = tiny_nus_root
    assert len(os.listdir(osp.join(root, 'samples', 'LIDAR_TOP'))) == 40
    for cam in CAMS:
        assert len(os.listdir(osp.join(root, 'samples', cam))) == 40
    tr = mmengine.load(osp.join(root, 'nuscenes_infos_train.pkl'))
    va = mmengine.load(osp.join(root, 'nuscenes_infos_val.pkl'))
    assert tr['metainfo']['version'] == 'v1.0-mini'
    assert len(tr['data_list']) == 32 and len(va['data_list']) == 8
    m = _modes(root)
    assert m['dataset'] == 'nuscenes'
    assert {d['token'] for d in tr['data_list']} == \
        {k for k, v in m['split'].items() if v == 'train'}
    d = tr['data_list'][0]
    assert set(d['images']) == set(CAMS)
    for cam in CAMS:
        im = d['images'][cam]
        assert np.asarray(im['cam2img']).shape == (3, 3)
        assert np.asarray(im['lidar2cam']).shape == (4, 4)
        assert np.asarray(im['cam2ego']).shape == (4, 4)
    pts = np.fromfile(osp.join(root, 'samples', 'LIDAR_TOP',
                               d['lidar_points']['lidar_path']),
                      np.float32).reshape(-1, 5)
    assert pts[:, 3].max() <= 255 and pts[:, 4].max() <= 31
    assert osp.isfile(osp.join(root, 'nuscenes_dbinfos_train.pkl'))


def test_nus_stock_lidar_pipeline(tiny_nus_root):
    cfg = _stock_cfg('nus-3d.py')
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.update(data_root=tiny_nus_root + '/',
                  pipeline=cfg.train_pipeline)
    ds = _build(ds_cfg)
    assert len(ds) == 32
    labels = []
    for i in range(3):
        out = ds[i]
        # the stock LoadPointsFromMultiSweeps keeps use_dim=[0, 1, 2, 4]
        # (x, y, z, time lag) of the 5-dim files
        assert out['inputs']['points'].shape[1] == 4
        gt = out['data_samples'].gt_instances_3d
        assert len(gt.bboxes_3d) == len(gt.labels_3d) > 0
        labels += gt.labels_3d.tolist()
    names = [ds.metainfo['classes'][i] for i in labels]
    assert set(names) <= {'car', 'pedestrian', 'bicycle'}


def test_nus_stock_camera_pipeline(tiny_nus_root):
    cfg = _stock_cfg('nus-mono3d.py')
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.update(data_root=tiny_nus_root + '/',
                  pipeline=cfg.train_pipeline)
    ds = _build(ds_cfg)
    assert len(ds) == 32 * 6
    n = 0
    for i in range(0, 12):
        out = ds[i]
        assert tuple(out['inputs']['img'].shape) == (3, 900, 1600)
        n += len(out['data_samples'].gt_instances_3d.labels_3d)
    assert n > 0


def test_nus_boxes_project_onto_drawn_objects(tiny_nus_root):
    import cv2
    import mmengine
    root = tiny_nus_root
    modes = _modes(root)['modes']
    info = mmengine.load(osp.join(root, 'nuscenes_infos_train.pkl'))
    classes = {v: k for k, v in info['metainfo']['categories'].items()}
    checked = ok = 0
    for d in info['data_list'][:12]:
        if modes[d['token']] != 'day':
            continue
        for cam in ('CAM_FRONT', 'CAM_BACK'):
            im = d['images'][cam]
            img = cv2.imread(osp.join(root, 'samples', cam, im['img_path']))
            K = np.asarray(im['cam2img'])
            l2c = np.asarray(im['lidar2cam'])
            for inst in d['instances']:
                name = classes[inst['bbox_label_3d']]
                if name not in ('car', 'pedestrian'):
                    continue
                x, y, z, l, w, h, yaw = inst['bbox_3d'][:7]  # noqa: E741
                # info boxes are gravity centred; sample at 30 % height
                p = l2c @ np.array([x, y, z - 0.2 * h, 1.0])
                if p[2] < 2 or p[2] > 35 or inst['num_lidar_pts'] < 30:
                    continue
                u, v = (K @ p[:3])[:2] / p[2]
                if not (0 <= u < 1600 and 0 <= v < 900):
                    continue
                checked += 1
                ok += _paint_ok(img[int(v), int(u)], name)
    assert checked >= 15
    assert ok >= 0.75 * checked, (ok, checked)


def test_nus_imbalance_and_rare_mode(tiny_nus_root):
    import cv2
    import mmengine
    root = tiny_nus_root
    info = mmengine.load(osp.join(root, 'nuscenes_infos_train.pkl'))
    cats = info['metainfo']['categories']
    labels = [i['bbox_label_3d'] for d in info['data_list']
              for i in d['instances']]
    n = {c: labels.count(cats[c]) for c in ('car', 'pedestrian', 'bicycle')}
    assert n['car'] > n['pedestrian'] > n['bicycle'] > 0, n
    m = _modes(root)
    rare = [k for k, v in m['modes'].items() if v == m['rare_mode']]
    assert len(rare) == 3 and any(m['split'][k] == 'train' for k in rare)
    by_tok = {d['token']: d for d in info['data_list']}

    def stats(tok):
        d = by_tok[tok]
        img = cv2.imread(osp.join(root, 'samples', 'CAM_FRONT',
                                  d['images']['CAM_FRONT']['img_path']))
        pts = np.fromfile(osp.join(root, 'samples', 'LIDAR_TOP',
                                   d['lidar_points']['lidar_path']),
                          np.float32)
        return img.mean(), len(pts) / 5

    r = np.array([stats(k) for k in rare if k in by_tok])
    d = np.array([stats(k) for k, v in m['modes'].items()
                  if v == 'day' and k in by_tok][:8])
    assert r[:, 0].mean() > d[:, 0].mean() + 25
    assert r[:, 1].mean() < 0.85 * d[:, 1].mean()


@pytest.mark.slow
def test_nus_seed_determinism(tmp_path, tiny_nus_root):
    from equity_tiny_data import create_tiny_nuscenes
    a = _digest(create_tiny_nuscenes(str(tmp_path / 'a'), 16, seed=1)['root'])
    b = _digest(create_tiny_nuscenes(str(tmp_path / 'b'), 16, seed=1)['root'])
    assert a == b
    d0 = _digest(tiny_nus_root)
    assert not set(k for k in a if k.startswith('samples/')) & set(d0)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------
def _cli(capsys, *args):
    """tools/create_tiny_dataset.py ARGS, in-process: (exit status, the
    last stderr line)."""
    from _tool_helpers import call_tool
    capsys.readouterr()
    rc = call_tool('create_tiny_dataset', args)
    return rc, capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize('args,message', [
    (['kitti', '--frames', '8'], 'argument --frames: must be >= 16 (needed '
     'to plant the class imbalance and the rare mode), got 8; use e.g. '
     '--frames 64'),
    (['kitti', '--frames', 'many'], 'argument --frames: must be an integer '
     "number of frames, got 'many' (e.g. --frames 64)"),
    (['nuscenes', '--seed', '-1'], 'argument --seed: must be a non-negative '
     'integer, got -1 (e.g. --seed 0)'),
    (['lyft'], "argument dataset: invalid choice: 'lyft' (choose from "
     "'kitti', 'nuscenes')"),
    (['kitti', '--rare-fraction', '0.1'], 'give both --rare-fraction and '
     '--val-rare-fraction, or neither'),
    (['kitti', '--rare-fraction', '1.5', '--val-rare-fraction', '0.5'],
     'argument --rare-fraction: must be a number in [0, 1), got 1.5'),
    (['nuscenes', '--rare-fraction', '0.1', '--val-rare-fraction', '0.5'],
     '--val-fraction/--rare-fraction/--val-rare-fraction apply to kitti '
     'only (nuScenes splits follow v1.0-mini)'),
    (['nuscenes', '--fog-scatter', '100'], '--fog-attenuation/'
     '--fog-intensity/--fog-scatter apply to kitti only'),
    (['kitti', '--fog-attenuation', '0'], '--fog-attenuation (attenuation '
     'length, m) must be a number > 0, got 0.0; e.g. 22'),
    (['kitti', '--fog-intensity', '2'], '--fog-intensity (intensity scale) '
     'must be in (0, 1], got 2.0; e.g. 0.45'),
    (['kitti', '--fog-scatter', '-5'], '--fog-scatter (scatter returns) '
     'must be an int >= 0, got -5; e.g. 700'),
])
def test_cli_bad_arguments(tmp_path, capsys, args, message):
    rc, err = _cli(capsys, *args, '--out', str(tmp_path / 'out'))
    assert rc == 2
    assert err == f'create_tiny_dataset.py: error: {message}'
    assert not (tmp_path / 'out').exists()


def test_cli_bad_output_paths(tmp_path, capsys):
    f = tmp_path / 'afile'
    f.write_text('x')
    rc, err = _cli(capsys, 'kitti', '--out', str(f))
    assert rc == 2
    assert err == (f"create_tiny_dataset.py: error: --out '{f}' is an "
                   'existing file, not a directory; choose a directory path')
    d = tmp_path / 'full'
    d.mkdir()
    (d / 'keep.txt').write_text('x')
    rc, err = _cli(capsys, 'kitti', '--out', str(d))
    assert rc == 2
    assert err == (f"create_tiny_dataset.py: error: --out '{d}' exists and "
                   'is not empty; add --overwrite to replace it or choose '
                   'another directory')
    assert (d / 'keep.txt').read_text() == 'x'


# --------------------------------------------------------------------------
# per-split rare-mode shares (the efficacy study's design) and oracle p
# --------------------------------------------------------------------------
def test_assign_modes_per_split_shares():
    from equity_tiny_data._common import DUSK_FRACTION, assign_modes
    train, val = list(range(128)), list(range(1000, 1064))
    modes = assign_modes(train, val, np.random.default_rng(0), 0.06, 0.5)
    for ids, share in ((train, 0.06), (val, 0.5)):
        got = [modes[i] for i in ids]
        assert got.count('fog') == round(share * len(ids))
        assert got.count('dusk') == round(DUSK_FRACTION * len(ids))
        assert got.count('day') == len(ids) - got.count('fog') - \
            got.count('dusk')
    # a share > 0 plants at least one rare frame; 0 plants none
    m = assign_modes(list(range(20)), list(range(20, 30)),
                     np.random.default_rng(1), 0.01, 0.0)
    assert [m[i] for i in range(20)].count('fog') == 1
    assert 'fog' not in [m[i] for i in range(20, 30)]
    with pytest.raises(ValueError, match='give both rare_fraction'):
        assign_modes(train, val, np.random.default_rng(0), 0.1, None)
    with pytest.raises(ValueError, match='leaves no day frame'):
        assign_modes(list(range(4)), list(range(4, 8)),
                     np.random.default_rng(0), 0.9, 0.5)


def test_oracle_likelihoods_are_planted_mode_frequencies(
        tiny_kitti_root, tmp_path):
    from collections import Counter

    from mmdet3d_equity.studies.efficacy.oracle import (
        write_oracle_likelihood_file,
    )
    from mmdet3d_equity.utils import load_likelihood_file
    with open(osp.join(tiny_kitti_root, 'frame_modes.json')) as f:
        planted = json.load(f)
    train = {k: v for k, v in planted['modes'].items()
             if planted['split'][k] == 'train'}
    counts = Counter(train.values())
    out = str(tmp_path / 'oracle_likelihoods.npz')
    write_oracle_likelihood_file(tiny_kitti_root, out)
    rec = load_likelihood_file(out)
    assert sorted(rec['sample_ids']) == sorted(train)
    for sid, p in zip(rec['sample_ids'], rec['likelihood']):
        assert p == counts[train[sid]] / max(counts.values())
    assert rec['embedder']['type'] == 'oracle'
    with pytest.raises(FileExistsError):
        write_oracle_likelihood_file(tiny_kitti_root, out)
