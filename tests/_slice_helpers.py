"""Shared helpers of the slice-evaluation tests: predictions made from the
ground truth of the tiny datasets' val splits (no training), and copies of
a dataset reduced to a subset of its val samples, on which the stock
metrics give the independent reference values."""
import copy
import json
import os
import os.path as osp

import mmengine
import numpy as np
import torch

KITTI_CLASSES = ['Pedestrian', 'Cyclist', 'Car']
NUS_CLASSES = ['car', 'bicycle', 'pedestrian']


def build_val_dataset(kind, root):
    from mmdet3d.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet3d')
    if kind == 'kitti':
        cfg = dict(type='KittiDataset', data_root=root,
                   ann_file='kitti_infos_val.pkl',
                   data_prefix=dict(pts='training/velodyne_reduced'),
                   pipeline=[], modality=dict(use_lidar=True,
                                              use_camera=False),
                   test_mode=True, metainfo=dict(classes=KITTI_CLASSES),
                   box_type_3d='LiDAR')
    else:
        cfg = dict(type='NuScenesDataset', data_root=root,
                   ann_file='nuscenes_infos_val.pkl', pipeline=[],
                   metainfo=dict(classes=NUS_CLASSES, version='v1.0-mini'),
                   test_mode=True, box_type_3d='LiDAR',
                   data_prefix=dict(pts='samples/LIDAR_TOP', img='',
                                    sweeps='sweeps/LIDAR_TOP'))
    return DATASETS.build(cfg)


def gt_predictions(dataset, mode='perfect', seed=0):
    """Model-output results (as a metric's ``process`` stores them) made
    from the ground truth of every val sample, ``sample_idx`` = position.

    'perfect': every object, shifted by 3 cm and 0.01 rad (boxes that
    coincide exactly hit a degenerate case of the rotated-IoU kernels, the
    numba CUDA one included), distinct scores. 'noisy': objects dropped,
    jittered, and false positives added, random scores.
    """
    from mmdet3d.structures import LiDARInstance3DBoxes
    rng = np.random.default_rng(seed)
    out = []
    for i in range(len(dataset)):
        ann = dataset.parse_ann_info(dataset.get_data_info(i))
        labels = np.asarray(ann['gt_labels_3d'])
        keep = labels >= 0
        t = ann['gt_bboxes_3d'].tensor[torch.from_numpy(keep)].clone()
        labels = labels[keep]
        if mode == 'perfect':
            t[:, 0] += 0.03
            t[:, 6] += 0.01
            scores = np.linspace(0.95, 0.5, len(t))
        else:
            sel = rng.random(len(t)) < 0.8
            t, labels = t[torch.from_numpy(sel)], labels[sel]
            t[:, :2] += torch.from_numpy(rng.normal(0, 0.25, (len(t), 2)))
            t[:, 6] += torch.from_numpy(rng.normal(0, 0.15, len(t)))
            n_fp = 2
            fp = t.new_zeros((n_fp, t.shape[1]))
            fp[:, 0] = torch.from_numpy(rng.uniform(5, 35, n_fp))
            fp[:, 1] = torch.from_numpy(rng.uniform(-15, 15, n_fp))
            fp[:, 2] = -1.0
            fp[:, 3:6] = torch.tensor([3.9, 1.6, 1.56])
            t = torch.cat([t, fp])
            labels = np.concatenate([labels, rng.integers(
                0, len(dataset.metainfo['classes']), n_fp)])
            scores = rng.uniform(0.05, 1.0, len(t))
        out.append(dict(
            pred_instances_3d=dict(
                bboxes_3d=LiDARInstance3DBoxes(t, box_dim=t.shape[1]),
                scores_3d=torch.as_tensor(scores, dtype=torch.float32),
                labels_3d=torch.as_tensor(labels, dtype=torch.long)),
            pred_instances=dict(), sample_idx=i))
    return out


def subset_results(results, positions):
    """The results of ``positions``, renumbered as a split of only them."""
    sub = []
    for j, i in enumerate(positions):
        r = copy.deepcopy(results[i])
        r['sample_idx'] = j
        sub.append(r)
    return sub


def reduced_info_file(ann_file, positions, out_file):
    info = mmengine.load(ann_file)
    info['data_list'] = [info['data_list'][i] for i in positions]
    mmengine.dump(info, out_file)
    return out_file


def reduced_nuscenes_root(root, keep_tokens, out, version='v1.0-mini'):
    """A copy of a nuScenes dataset whose val split holds only
    ``keep_tokens``: the other val samples are moved to a scene outside
    the split (their annotations stay, as the devkit derives ground-truth
    velocities from neighbouring annotations); tables copied, maps linked,
    val infos reduced. Returns the positions kept."""
    keep = set(keep_tokens)
    ann = osp.join(root, 'nuscenes_infos_val.pkl')
    val = [d['token'] for d in mmengine.load(ann)['data_list']]
    drop = set(val) - keep
    os.makedirs(osp.join(out, version))
    os.symlink(osp.join(root, 'maps'), osp.join(out, 'maps'))
    for f in os.listdir(osp.join(root, version)):
        with open(osp.join(root, version, f)) as fh:
            rows = json.load(fh)
        if f == 'scene.json':
            rows.append(dict(rows[0], token='filtered_out',
                             name='scene-filtered-out',
                             description='not evaluated'))
        elif f == 'sample.json':
            for r in rows:
                if r['token'] in drop:
                    r['scene_token'] = 'filtered_out'
        with open(osp.join(out, version, f), 'w') as fh:
            json.dump(rows, fh)
    positions = [i for i, t in enumerate(val) if t in keep]
    reduced_info_file(ann, positions, osp.join(out, 'nuscenes_infos_val.pkl'))
    return positions


def strip(metrics, unit):
    """{wrapped key: value} of the unit's stock keys ('@unit/...')."""
    pre = f'@{unit}/'
    return {k[len(pre):]: v for k, v in metrics.items()
            if k.startswith(pre)}
