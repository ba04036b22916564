"""The exactness checks on the real heads of mmdetection3d's projects/
(PETRHead, TransFusionHead) and the DETR3DHead build failure, for
test_projects_heads.py, which runs each function in its own Python process
(projects/PETR and projects/BEVFusion both register 'HungarianAssigner3D',
so they cannot be imported into one process).

Usage: ``python _projects_checks.py <check> <mmdetection3d root>``.
"""
import copy
import importlib.util
import os.path as osp
import sys

import numpy as np
import torch
from _grad_reference import check_family
from torch import nn

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity.models.head_adapters import adapter_for_head
from mmdet3d_equity.models.sample_weighting import DetectorWeighting


def _config(root, rel):
    from mmengine.config import Config
    return Config.fromfile(osp.join(root, rel), import_custom_modules=False)


def _no_dropout(cfg):
    """Dropout 0 everywhere (the reference reruns the forward per
    sample)."""
    if isinstance(cfg, dict):
        for k in list(cfg):
            if k in ('dropout', 'attn_drop', 'drop_prob', 'ffn_dropout',
                     'ffn_drop', 'proj_drop'):
                cfg[k] = 0.0
            else:
                _no_dropout(cfg[k])
    elif isinstance(cfg, (list, tuple)):
        for v in cfg:
            _no_dropout(v)
    return cfg


def _lidar_samples(B, seed, n_classes, xy_range, likelihoods=None):
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
    from mmengine.structures import InstanceData
    g = np.random.default_rng(seed)
    out = []
    for b in range(B):
        n = 1 + (b + seed) % 3
        boxes = np.concatenate([
            g.uniform(-xy_range, xy_range, (n, 2)), g.uniform(-1, 0, (n, 1)),
            g.uniform(1, 4, (n, 3)), g.uniform(-3, 3, (n, 1)),
            g.uniform(-1, 1, (n, 2))], 1)
        meta = dict(sample_idx=b, box_type_3d=LiDARInstance3DBoxes)
        if likelihoods is not None:
            meta['equity_likelihood'] = float(likelihoods[b])
        ds = Det3DDataSample(metainfo=meta)
        gt = InstanceData()
        gt.bboxes_3d = LiDARInstance3DBoxes(
            torch.tensor(boxes, dtype=torch.float32), box_dim=9)
        gt.labels_3d = torch.tensor(g.integers(0, n_classes, n))
        ds.gt_instances_3d = gt
        out.append(ds)
    return out


# ---------------------------------------------------------------------------
def check_petr(root):
    sys.path.insert(0, root)
    import projects.PETR.petr  # noqa: F401  (registers)
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = _config(root, 'projects/PETR/configs/'
                  'petr_vovnet_gridmask_p4_800x320.py').model
    head_cfg = _no_dropout(copy.deepcopy(cfg.pts_bbox_head))
    head_cfg.update(in_channels=16, num_query=8, depth_num=4,
                    train_cfg=cfg.train_cfg.pts)
    head_cfg.transformer.decoder.num_layers = 2
    head_cfg.transformer.decoder.transformerlayers.feedforward_channels = 64
    N, H, W, ph, pw = 2, 4, 6, 32, 48

    class PETR(nn.Module):
        """The detector's training path (forward_pts_train) on a small
        image trunk: head forward, then loss_by_feat."""

        def __init__(self):
            super().__init__()
            self.img_backbone = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16),
                nn.ReLU())
            self.pts_bbox_head = MODELS.build(head_cfg)

        def forward(self, inputs, data_samples=None, mode='loss'):
            img = inputs['imgs']
            B = img.shape[0]
            f = self.img_backbone(img.flatten(0, 1))
            f = f.view(B, N, *f.shape[1:])
            metas = [ds.metainfo for ds in data_samples]
            outs = self.pts_bbox_head([f], metas)
            gts = [ds.gt_instances_3d for ds in data_samples]
            return self.pts_bbox_head.loss_by_feat(
                [g.bboxes_3d for g in gts], [g.labels_3d for g in gts], outs)

    torch.manual_seed(0)
    model = PETR().train()
    head = model.pts_bbox_head
    assert type(head).__module__.startswith('projects.PETR'), type(head)
    assert type(adapter_for_head(head)).__name__ == 'PETRHeadAdapter'
    B = 3
    samples = _lidar_samples(B, 0, 10, 40)
    g = np.random.default_rng(1)
    for ds in samples:
        l2i = []
        for _ in range(N):
            m = np.eye(4) + 0.1 * g.normal(size=(4, 4))
            m[3] = [0, 0, 0, 1]
            l2i.append(m)
        ds.set_metainfo(dict(pad_shape=(ph, pw), img_shape=[(ph, pw)] * N,
                             lidar2img=l2i))
    imgs = torch.tensor(g.normal(size=(B, N, 3, H, W)), dtype=torch.float32)
    data = dict(inputs=dict(imgs=imgs), data_samples=samples)
    check_family(head, [model], lambda: model(**copy.deepcopy(data)),
                 [0.55, 1.0, 0.8], lambda: DetectorWeighting(model), dim=1)
    print('PETRHead (projects/PETR): exact, weights matter, ones = stock')


# ---------------------------------------------------------------------------
def _load_by_path(root, names):
    """Import projects/BEVFusion/bevfusion/<name>.py without the package's
    __init__ (which imports the compiled CUDA ops)."""
    mods = []
    for name in names:
        path = osp.join(root, 'projects/BEVFusion/bevfusion', name + '.py')
        spec = importlib.util.spec_from_file_location(f'bevfusion_{name}',
                                                      path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods.append(mod)
    return mods


def check_transfusion(root):
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    _, _, th = _load_by_path(root, ['transformer', 'utils',
                                    'transfusion_head'])
    cfg = _config(root, 'projects/BEVFusion/configs/bevfusion_lidar_'
                  'voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py').model
    head_cfg = _no_dropout(copy.deepcopy(cfg.bbox_head))
    pcr = [-16.0, -16.0, -5.0, 16.0, 16.0, 3.0]
    grid = dict(grid_size=[64, 64, 1], voxel_size=[0.5, 0.5, 8.0],
                out_size_factor=4)
    # one decoder layer, as the stock config: mmdet3d 1.4's get_targets
    # indexes the prediction list by decoder layer, which only works for 1
    head_cfg.update(in_channels=16, hidden_channel=32, num_proposals=6,
                    num_decoder_layers=1)
    head_cfg.decoder_layer.self_attn_cfg.update(embed_dims=32, num_heads=2)
    head_cfg.decoder_layer.cross_attn_cfg.update(embed_dims=32, num_heads=2)
    head_cfg.decoder_layer.ffn_cfg.update(embed_dims=32,
                                          feedforward_channels=64)
    head_cfg.decoder_layer.pos_encoding_cfg.update(num_pos_feats=32)
    head_cfg.train_cfg.update(point_cloud_range=pcr, **grid)
    head_cfg.test_cfg.update(grid_size=grid['grid_size'],
                             out_size_factor=4, voxel_size=[0.5, 0.5],
                             pc_range=pcr[:2])
    head_cfg.bbox_coder.update(pc_range=pcr[:2], out_size_factor=4,
                               voxel_size=[0.5, 0.5])

    class BEVFusion(nn.Module):
        """The detector's training path: the whole loss is bbox_head's."""

        def __init__(self):
            super().__init__()
            self.pts_backbone = nn.Sequential(
                nn.Conv2d(4, 16, 3, padding=1), nn.BatchNorm2d(16),
                nn.ReLU())
            self.bbox_head = MODELS.build(head_cfg)

        def forward(self, inputs, data_samples=None, mode='loss'):
            return self.bbox_head.loss([self.pts_backbone(inputs['bev'])],
                                       data_samples)

    torch.manual_seed(0)
    model = BEVFusion().train()
    head = model.bbox_head
    assert type(head) is th.TransFusionHead
    assert type(adapter_for_head(head)).__name__ == 'TransFusionHeadAdapter'
    B = 3
    samples = _lidar_samples(B, 0, 10, 14)
    g = np.random.default_rng(2)
    bev = torch.tensor(g.normal(size=(B, 4, 16, 16)), dtype=torch.float32)
    data = dict(inputs=dict(bev=bev), data_samples=samples)
    check_family(head, [model], lambda: model(**copy.deepcopy(data)),
                 [0.55, 1.0, 0.8], lambda: DetectorWeighting(model))
    # SSB on the query classification (integer label weights upstream):
    # uniform class weights 2 double every layer's loss_cls
    from mmdet3d_equity.models.losses.ssb_loss import HeadSSB
    model.eval()
    with torch.no_grad():
        plain = model(**copy.deepcopy(data))
        ssb = HeadSSB(head)
        ssb.loss.set_class_weights([2.0] * 10)
        doubled = model(**copy.deepcopy(data))
        ssb.remove()
    for k in plain:
        want = 2 * plain[k] if k.endswith('loss_cls') else plain[k]
        torch.testing.assert_close(doubled[k], want, msg=k)
    print('TransFusionHead (projects/BEVFusion): exact, weights matter, '
          'ones = stock, SSB on loss_cls')


# ---------------------------------------------------------------------------
def check_detr3d_does_not_build(root):
    sys.path.insert(0, root)
    import projects.DETR3D.detr3d  # noqa: F401
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = _config(root, 'projects/DETR3D/configs/detr3d_r101_gridmask.py')
    head_cfg = copy.deepcopy(cfg.model.pts_bbox_head)
    head_cfg.update(train_cfg=cfg.model.train_cfg.pts)
    try:
        MODELS.build(head_cfg)
    except TypeError as e:
        assert 'transformer' in str(e), e
        print(f'DETR3DHead does not build with this mmdet: {e}')
        return
    raise AssertionError('DETR3DHead built: the refusal reason in '
                         'head_adapters/query.py is out of date')


if __name__ == '__main__':
    check, root = sys.argv[1], sys.argv[2]
    globals()[check](root)
