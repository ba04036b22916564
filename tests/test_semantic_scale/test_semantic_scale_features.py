"""Object-feature sampling picks the right map cells for known boxes."""
import os.path as osp

import pytest
import torch
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
from mmengine.config import Config
from mmengine.structures import InstanceData

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity.semantic_scale.features import (
    ObjectFeatureSampler,
    UnsupportedDetectorError,
    sample_map,
)

TINY = 'configs/tiny/pointpillars_tiny-kitti-3class.py'


def coord_map(B, H, W, extra=0.0):
    """(B, 3, H, W): channel 0 = column, 1 = row, 2 = batch index + extra."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32),
                            torch.arange(W, dtype=torch.float32),
                            indexing='ij')
    maps = []
    for b in range(B):
        maps.append(torch.stack([xs, ys, torch.full_like(xs, b + extra)]))
    return torch.stack(maps)


def test_sample_map_nearest_and_bilinear():
    fmap = coord_map(1, 5, 7)[0]
    fx = torch.tensor([0.0, 3.0, 6.0, 2.3, 4.6])
    fy = torch.tensor([0.0, 2.0, 4.0, 1.5, 0.2])
    near = sample_map(fmap, fx, fy, 'nearest')
    assert near[:, 0].tolist() == [0, 3, 6, 2, 5]
    assert near[:, 1].tolist() == [0, 2, 4, 2, 0]
    bil = sample_map(fmap, fx, fy, 'bilinear')
    assert torch.allclose(bil[:, 0], fx, atol=1e-5)
    assert torch.allclose(bil[:, 1], fy, atol=1e-5)
    with pytest.raises(ValueError, match='sampling mode'):
        sample_map(fmap, fx, fy, 'cubic')


@pytest.fixture(scope='module')
def tiny_model():
    cfg = Config.fromfile(TINY)
    return MODELS.build(cfg.model)


def _lidar_sample(xy, labels):
    ds = Det3DDataSample()
    inst = InstanceData()
    n = len(labels)
    boxes = torch.zeros(n, 7)
    boxes[:, :2] = torch.tensor(xy, dtype=torch.float32)
    boxes[:, 3:6] = 1.0
    inst.bboxes_3d = LiDARInstance3DBoxes(boxes)
    inst.labels_3d = torch.tensor(labels)
    ds.gt_instances_3d = inst
    return ds


def test_bev_sampling_picks_box_centre_cells(tiny_model):
    # tiny config: range x [0, 40.96], y [-20.48, 20.48]; neck map 64 x 64
    # -> 0.64 m cells
    H = W = 64
    cell = 0.64
    feats = [coord_map(2, H, W)]
    cells = [(3, 10), (63, 0), (20, 41)]  # (ix, iy)
    xy = [(0 + (ix + 0.5) * cell, -20.48 + (iy + 0.5) * cell)
          for ix, iy in cells]
    # a 4th object outside the range and a 5th with an ignored label (-1)
    xy += [(50.0, 0.0), (5.0, 5.0)]
    samples = [_lidar_sample(xy, [0, 1, 2, 0, -1]),
               _lidar_sample([(0.4 * cell, -20.48 + 0.9 * cell)], [2])]
    for mode in ('nearest', 'bilinear'):
        s = ObjectFeatureSampler(tiny_model, 3, mode=mode)
        assert s.kind == 'bev'
        f, lab = s(feats, samples)
        assert lab.tolist() == [0, 1, 2, 2]
        assert s.num_dropped == 1
        assert torch.allclose(f[:3, 0], torch.tensor([3., 63., 20.]),
                              atol=1e-4)
        assert torch.allclose(f[:3, 1], torch.tensor([10., 0., 41.]),
                              atol=1e-4)
        assert f[:3, 2].tolist() == [0, 0, 0] and f[3, 2].item() == 1
        if mode == 'nearest':
            assert f[3, :2].tolist() == [0, 0]
        else:  # continuous position (0.4 - 0.5, 0.9 - 0.5), clamped at 0
            assert torch.allclose(f[3, :2], torch.tensor([0.0, 0.4]),
                                  atol=1e-4)
    # L2 normalisation
    s = ObjectFeatureSampler(tiny_model, 3, mode='nearest',
                             l2_normalize=True)
    f, _ = s(feats, samples)
    assert torch.allclose(f.norm(dim=1), torch.ones(len(f)))


def test_fcos3d_level_by_regress_range_and_projected_centre():
    import mmdet3d
    cfg = Config.fromfile(osp.join(
        osp.dirname(mmdet3d.__file__), '.mim', 'configs', 'fcos3d',
        'fcos3d_r101-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d.py'))
    cfg.model.bbox_head.dcn_on_last_conv = False
    cfg.model.bbox_head.stacked_convs = 1
    model = torch.nn.Module()
    model.bbox_head = MODELS.build(cfg.model.bbox_head)
    strides = model.bbox_head.strides  # 8, 16, 32, 64, 128
    img_h, img_w = 512, 768
    feats = [coord_map(1, img_h // s, img_w // s, extra=10 * i)
             for i, s in enumerate(strides)]
    # centre at cell (ix, iy) of level l: pixel = i * s + s // 2
    objs = [(0, 5, 7, 20), (1, 9, 3, 70), (2, 2, 1, 150), (3, 4, 2, 300),
            (4, 1, 0, 500)]
    uv, boxes = [], []
    for lvl, ix, iy, half in objs:
        s = strides[lvl]
        u, v = ix * s + s // 2, iy * s + s // 2
        uv.append((u, v))
        boxes.append((u - half, v - half / 2, u + half / 2, v + half / 3))
    ds = Det3DDataSample()
    g3 = InstanceData()
    g3.centers_2d = torch.tensor(uv, dtype=torch.float32)
    g3.labels_3d = torch.tensor([0, 1, 2, 3, 4])
    ds.gt_instances_3d = g3
    g2 = InstanceData()
    g2.bboxes = torch.tensor(boxes, dtype=torch.float32)
    ds.gt_instances = g2
    s = ObjectFeatureSampler(model, 10, mode='nearest')
    assert s.kind == 'mono_fcos'
    f, lab = s(feats, [ds])
    order = lab.argsort()
    f, lab = f[order], lab[order]
    assert lab.tolist() == [0, 1, 2, 3, 4]
    assert f[:, 2].tolist() == [0, 10, 20, 30, 40]  # the matched level
    assert f[:, 0].tolist() == [o[1] for o in objs]
    assert f[:, 1].tolist() == [o[2] for o in objs]
    # missing 2D boxes: clear error
    del ds.gt_instances
    with pytest.raises(KeyError, match='2D boxes'):
        s(feats, [ds])


def test_unsupported_detector_is_a_clear_error():
    class Fake(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bbox_head = torch.nn.Linear(2, 2)

    with pytest.raises(UnsupportedDetectorError, match='supported heads'):
        ObjectFeatureSampler(Fake(), 3)
    with pytest.raises(UnsupportedDetectorError, match='bbox_head'):
        ObjectFeatureSampler(torch.nn.Linear(2, 2), 3)
