"""A stand-in of mmdetection3d 1.4's projects/BEVFusion ``TransFusionHead``
(not in the pip wheel), written for the tests from the upstream head's
description; it reproduces what the exactness of per-sample weighting
depends on:

* ``forward(feats, metas)`` -> ``([dict], )``: ``dense_heatmap`` [B, C, X,
  Y]; ``heatmap``, ``center``, ``height``, ``dim``, ``rot``, ``vel`` [B, *,
  P * L] (decoder layers concatenated on the last axis);
  ``query_heatmap_score`` [B, C, P] from the detached heatmap;
* query initialisation: top-P of ``dense_heatmap.detach().sigmoid()``
  gathers the fused BEV feature; the next layer's position is the detached
  centre; batch norm in the prediction heads (couples samples);
* loss: per-sample Hungarian matching on detached predictions, integer
  ``label_weights``, heatmap loss on ``clip_sigmoid`` (in place) with
  avg_factor max(#(heatmap target == 1) of the batch, 1), cls and bbox
  losses per layer with avg_factor max(num_pos, 1), num_pos summed over
  the batch and the layers; ``matched_ious`` in the loss dict.

The heatmap target is drawn at (row = x cell, column = y cell), as upstream.
"""
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import nn

PCR = [-8.0, -8.0, -3.0, 8.0, 8.0, 1.0]
VOXEL = [0.5, 0.5, 4.0]
OSF = 2  # 16 m / (0.5 m * 2) = 16 cells
HEADS = dict(center=2, height=1, dim=3, rot=2, vel=2)


def clip_sigmoid(x, eps=1e-4):
    return torch.clamp(x.sigmoid_(), min=eps, max=1 - eps)


class TransFusionHead(nn.Module):

    def __init__(self, in_channels=8, hidden=16, num_classes=3,
                 num_proposals=5, num_decoder_layers=2, extra_heads=()):
        super().__init__()
        from mmdet3d.registry import MODELS
        self.num_classes = num_classes
        self.use_sigmoid_cls = True
        self.num_proposals = num_proposals
        self.num_decoder_layers = num_decoder_layers
        self.train_cfg = dict(point_cloud_range=PCR, voxel_size=VOXEL,
                              out_size_factor=OSF, grid_size=[32, 32, 1],
                              gaussian_overlap=0.1, min_radius=1,
                              code_weights=[1.0] * 8 + [0.2, 0.2])
        self.shared_conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.heatmap_head = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.BatchNorm2d(hidden),
            nn.ReLU(), nn.Conv2d(hidden, num_classes, 3, padding=1))
        self.class_encoding = nn.Conv1d(num_classes, hidden, 1)
        self.decoder = nn.ModuleList(
            nn.Conv1d(hidden, hidden, 1) for _ in range(num_decoder_layers))
        heads = dict(HEADS, heatmap=num_classes)
        heads.update({k: 1 for k in extra_heads})
        self.prediction_heads = nn.ModuleList(
            nn.ModuleDict({
                k: nn.Sequential(nn.Conv1d(hidden, hidden, 1),
                                 nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Conv1d(hidden, c, 1))
                for k, c in heads.items()
            }) for _ in range(num_decoder_layers))
        self.loss_cls = MODELS.build(dict(type='mmdet.FocalLoss',
                                          use_sigmoid=True, gamma=2.0,
                                          alpha=0.25, reduction='mean',
                                          loss_weight=1.0))
        self.loss_bbox = MODELS.build(dict(type='mmdet.L1Loss',
                                           reduction='mean',
                                           loss_weight=0.25))
        self.loss_heatmap = MODELS.build(dict(type='mmdet.GaussianFocalLoss',
                                              reduction='mean',
                                              loss_weight=1.0))

    def forward_single(self, inputs, metas):
        B = inputs.shape[0]
        fused = self.shared_conv(inputs)
        X, Y = fused.shape[-2:]
        flat = fused.view(B, fused.shape[1], -1)
        gx, gy = torch.meshgrid(torch.arange(X) + 0.5, torch.arange(Y) + 0.5,
                                indexing='ij')
        bev_pos = torch.stack([gx, gy], -1).view(1, -1, 2).repeat(B, 1, 1)
        dense_heatmap = self.heatmap_head(fused)
        heatmap = dense_heatmap.detach().sigmoid().view(B, self.num_classes,
                                                        -1)
        top = heatmap.view(B, -1).argsort(-1, descending=True)[
            ..., :self.num_proposals]
        top_cls = top // heatmap.shape[-1]
        top_idx = top % heatmap.shape[-1]
        query = flat.gather(-1, top_idx[:, None].expand(-1, flat.shape[1],
                                                        -1))
        one_hot = F.one_hot(top_cls, self.num_classes).permute(0, 2, 1)
        query = query + self.class_encoding(one_hot.float())
        query_pos = bev_pos.gather(1, top_idx[..., None].expand(-1, -1, 2))
        rets = []
        for i in range(self.num_decoder_layers):
            query = torch.relu(self.decoder[i](query + flat.mean(
                -1, keepdim=True)))
            res = {k: h(query) for k, h in self.prediction_heads[i].items()}
            res['center'] = res['center'] + query_pos.permute(0, 2, 1)
            rets.append(res)
            query_pos = res['center'].detach().clone().permute(0, 2, 1)
        rets[0]['query_heatmap_score'] = heatmap.gather(
            -1, top_idx[:, None].expand(-1, self.num_classes, -1))
        rets[0]['dense_heatmap'] = dense_heatmap
        new = {}
        for key in rets[0]:
            if key in ('dense_heatmap', 'query_heatmap_score'):
                new[key] = rets[0][key]
            else:
                new[key] = torch.cat([r[key] for r in rets], -1)
        return [new]

    def forward(self, feats, metas):
        if isinstance(feats, torch.Tensor):
            feats = [feats]
        assert len(feats) == 1
        return ([self.forward_single(feats[0], metas)[0]], )

    def loss(self, batch_feats, batch_data_samples):
        metas = [ds.metainfo for ds in batch_data_samples]
        preds = self(batch_feats, metas)
        return self.loss_by_feat(
            preds, [ds.gt_instances_3d for ds in batch_data_samples])

    # -- targets -------------------------------------------------------------
    def encode(self, boxes):
        cell = VOXEL[0] * OSF
        cx = (boxes[:, 0] - PCR[0]) / cell
        cy = (boxes[:, 1] - PCR[1]) / cell
        return torch.stack([cx, cy, boxes[:, 2], boxes[:, 3].log(),
                            boxes[:, 4].log(), boxes[:, 5].log(),
                            boxes[:, 6].sin(), boxes[:, 6].cos(),
                            boxes[:, 7], boxes[:, 8]], 1)

    def heatmap_target(self, gt, X, Y):
        from mmdet3d.models import draw_heatmap_gaussian, gaussian_radius
        hm = torch.zeros(self.num_classes, X, Y)
        cell = VOXEL[0] * OSF
        boxes = gt.bboxes_3d.tensor
        for k in range(len(boxes)):
            w, l_ = boxes[k, 3] / cell, boxes[k, 4] / cell
            r = max(self.train_cfg['min_radius'],
                    int(gaussian_radius((l_, w), min_overlap=0.1)))
            cx = (boxes[k, 0] - PCR[0]) / cell
            cy = (boxes[k, 1] - PCR[1]) / cell
            c = torch.tensor([cx, cy]).to(torch.int32)
            draw_heatmap_gaussian(hm[gt.labels_3d[k]], c[[1, 0]], r)
        return hm

    def targets_single(self, gt, pred, b):
        P, Lyr = self.num_proposals, self.num_decoder_layers
        tgt = self.encode(gt.bboxes_3d.tensor)
        labels = torch.full((P * Lyr, ), self.num_classes, dtype=torch.long)
        label_weights = torch.ones(P * Lyr, dtype=torch.long)
        bbox_t = torch.zeros(P * Lyr, 10)
        bbox_w = torch.zeros(P * Lyr, 10)
        centre = pred['center'][b].detach().T  # [P * L, 2]
        num_pos = 0
        for lyr in range(Lyr):
            sl = slice(lyr * P, (lyr + 1) * P)
            cost = torch.cdist(centre[sl], tgt[:, :2], p=1)
            rows, cols = linear_sum_assignment(cost.numpy())
            rows = torch.as_tensor(rows) + lyr * P
            cols = torch.as_tensor(cols)
            labels[rows] = gt.labels_3d[cols]
            bbox_t[rows] = tgt[cols]
            bbox_w[rows] = 1.0
            num_pos += len(rows)
        return labels, label_weights, bbox_t, bbox_w, num_pos

    def loss_by_feat(self, preds_dicts, batch_gt_instances_3d):
        pred = preds_dicts[0][0]
        X, Y = pred['dense_heatmap'].shape[-2:]
        t = [self.targets_single(g, pred, b)
             for b, g in enumerate(batch_gt_instances_3d)]
        labels, label_w, bbox_t, bbox_w = (torch.stack([x[i] for x in t])
                                           for i in range(4))
        num_pos = sum(x[4] for x in t)
        heatmap = torch.stack([self.heatmap_target(g, X, Y)
                               for g in batch_gt_instances_3d])
        losses = dict(loss_heatmap=self.loss_heatmap(
            clip_sigmoid(pred['dense_heatmap']).float(), heatmap.float(),
            avg_factor=max(heatmap.eq(1).float().sum().item(), 1)))
        P = self.num_proposals
        cw = torch.tensor(self.train_cfg['code_weights'])
        for lyr in range(self.num_decoder_layers):
            pre = ('layer_-1' if lyr == self.num_decoder_layers - 1 else
                   f'layer_{lyr}')
            sl = slice(lyr * P, (lyr + 1) * P)
            score = pred['heatmap'][..., sl].permute(0, 2, 1).reshape(
                -1, self.num_classes)
            losses[f'{pre}_loss_cls'] = self.loss_cls(
                score.float(), labels[:, sl].reshape(-1),
                label_w[:, sl].reshape(-1), avg_factor=max(num_pos, 1))
            box = torch.cat([pred[k][..., sl] for k in HEADS],
                            1).permute(0, 2, 1)
            losses[f'{pre}_loss_bbox'] = self.loss_bbox(
                box, bbox_t[:, sl], bbox_w[:, sl] * cw,
                avg_factor=max(num_pos, 1))
        losses['matched_ious'] = score.new_tensor(0.5)
        return losses


class BEVFusion(nn.Module):
    """Detector stand-in: the whole loss is bbox_head's (as upstream)."""

    def __init__(self, **head_kw):
        super().__init__()
        self.pts_backbone = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1),
                                          nn.BatchNorm2d(8), nn.ReLU())
        self.bbox_head = TransFusionHead(**head_kw)

    def forward(self, inputs, data_samples=None, mode='loss'):
        feats = [self.pts_backbone(inputs['bev'])]
        return self.bbox_head.loss(feats, data_samples)


def bev_batch(B, seed=0, likelihoods=None, X=16, Y=16):
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
    g = np.random.default_rng(seed)
    samples = []
    for b in range(B):
        n = 1 + (b + seed) % 3
        boxes = np.concatenate([
            g.uniform(-7, 7, (n, 2)), g.uniform(-1, 0, (n, 1)),
            g.uniform(1, 3, (n, 3)), g.uniform(-3, 3, (n, 1)),
            g.uniform(-1, 1, (n, 2))], 1)
        meta = dict(sample_idx=b)
        if likelihoods is not None:
            meta['equity_likelihood'] = float(likelihoods[b])
        ds = Det3DDataSample(metainfo=meta)
        gt = InstanceData()
        gt.bboxes_3d = LiDARInstance3DBoxes(
            torch.tensor(boxes, dtype=torch.float32), box_dim=9,
            origin=(0.5, 0.5, 0.5))
        gt.labels_3d = torch.tensor(g.integers(0, 3, n))
        ds.gt_instances_3d = gt
        samples.append(ds)
    bev = torch.tensor(g.normal(size=(B, 4, X, Y)), dtype=torch.float32)
    return dict(inputs=dict(bev=bev), data_samples=samples)
