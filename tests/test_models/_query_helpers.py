"""Shared by the query-head tests: mmdet's DETRHead family built small
(in mmdet's own scope), a decoder-state stand-in and 2D samples."""
import numpy as np
import torch
from mmengine.structures import InstanceData
from torch import nn

L, Q, C = 2, 6, 16


def detr_head(kind='DETRHead', **kw):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    sigmoid = kind != 'DETRHead'
    cfg = dict(
        type=kind, num_classes=3, embed_dims=C,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                      alpha=0.25, loss_weight=2.0) if sigmoid else
        dict(type='CrossEntropyLoss', bg_cls_weight=0.1, use_sigmoid=False,
             loss_weight=1.0, class_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0),
        train_cfg=dict(assigner=dict(
            type='HungarianAssigner', match_costs=[
                dict(type='FocalLossCost', weight=2.0) if sigmoid else
                dict(type='ClassificationCost', weight=1.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
        test_cfg=dict(max_per_img=10))
    if kind == 'DeformableDETRHead':
        cfg.update(share_pred_layer=False, num_pred_layer=L,
                   as_two_stage=False)
    cfg.update(kw)
    # mmdet's own scope (another test may have made mmdet3d the default)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg)


class QueryTrunk(nn.Module):
    """Decoder-state stand-in: per-layer linear maps of the queries with a
    batch norm across samples (couples them in the forward pass)."""

    def __init__(self, cin=8):
        super().__init__()
        self.lin = nn.Linear(cin, L * C)
        self.bn = nn.BatchNorm1d(L * C)

    def forward(self, x):  # x [B, Q, cin] -> [L, B, Q, C]
        B = x.shape[0]
        h = self.bn(self.lin(x).reshape(B * Q, L * C)).relu()
        return h.view(B, Q, L, C).permute(2, 0, 1, 3)


def samples_2d(B, seed=0, H=64, W=80):
    from mmdet.structures import DetDataSample
    g = np.random.default_rng(seed)
    out = []
    for b in range(B):
        n = 1 + (b + seed) % 3
        xy = g.uniform(0, [W - 20, H - 20], (n, 2))
        wh = g.uniform(6, 18, (n, 2))
        ds = DetDataSample(metainfo=dict(img_shape=(H, W), pad_shape=(H, W),
                                         batch_input_shape=(H, W)))
        gt = InstanceData()
        gt.bboxes = torch.tensor(np.concatenate([xy, xy + wh], 1),
                                 dtype=torch.float32)
        gt.labels = torch.tensor(g.integers(0, 3, n))
        ds.gt_instances = gt
        out.append(ds)
    return out
