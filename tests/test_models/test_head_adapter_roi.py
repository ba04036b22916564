"""Two-stage RoI heads (PartA2, PV-RCNN) weighted together with their RPN.

Their full models need CUDA ops (sparse convolution, RoI-aware pooling,
ball query, points-in-boxes). On CPU the tests drive the real
``PartA2RPNHead``, the real RoI heads' ``_bbox_forward_train`` (RoIs from
``bbox3d2roi``, the real PV-RCNN box head, the real box targets and losses),
and the real semantic heads' forward and loss (targets given, since
``get_targets`` needs points-in-boxes), with CPU stand-ins of exactly the
CUDA-only parts: the RoI extractors (same call signature: feats, coords,
batch indices, rois) and the PartA2 box head's sparse-conv forward (same
output layout, the real ``PartA2BboxHead`` loss and targets). Detector
stand-ins hand over the rows' sample indices where the real detectors do
(``middle_encoder`` input, ``points_encoder`` output). Dropout is 0: the
reference reruns the forward once per sample.
"""
import copy
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _grad_reference import (
    assert_grads_equal,
    detach_others,
    grads_of,
    max_diff,
    mechanism_grads,
    total,
    zero,
)
from torch import nn

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity.models.head_adapters import UnsupportedHeadError
from mmdet3d_equity.models.head_adapters.grad_scale import scale_grad_by_index
from mmdet3d_equity.models.sample_weighting import DetectorWeighting

PCR = [0.0, -40.0, -3.0, 70.4, 40.0, 1.0]
R = 4  # RoIs per sample
NPTS = 12  # voxels / keypoints per sample


def stock(rel):
    import mmdet3d
    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules(init_default_scope=True)
    return Config.fromfile(osp.join(osp.dirname(mmdet3d.__file__), '.mim',
                                    'configs', rel)).model


def build(cfg):
    from mmdet3d.registry import MODELS
    return MODELS.build(cfg)


def rpn_of(cfg):
    rpn = copy.deepcopy(cfg.rpn_head)
    rpn.update(in_channels=8, feat_channels=8, train_cfg=cfg.train_cfg.rpn,
               test_cfg=cfg.test_cfg.rpn)
    return build(rpn)


class RoIPool(nn.Module):
    """CPU stand-in of an RoI extractor: every grid cell of an RoI pools
    the features of its own sample's points, weighted by their distance to
    the RoI centre (differentiable in the features)."""

    def __init__(self, grid=2):
        super().__init__()
        self.grid = grid
        self.register_buffer('cells', torch.linspace(0.5, 1.5, grid**3))

    def forward(self, feats, coords, batch_inds, rois):
        out = []
        for roi in rois:
            same = batch_inds.long() == int(roi[0])
            d = (coords[same, :3] - roi[1:4]).pow(2).sum(-1)
            w = torch.softmax(-d / 25.0, 0)
            pooled = (w[:, None] * feats[same]).sum(0)
            out.append(self.cells[:, None] * pooled[None])
        g = self.grid
        return torch.stack(out).view(len(rois), g, g, g, feats.shape[-1])


class PointsEncoder(nn.Module):
    """Stand-in of PV-RCNN's points encoder output (keypoints with their
    sample in column 0, keypoint and fusion features; BN couples samples).
    """

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 16)
        self.bn = nn.BatchNorm1d(16)
        self.fuse = nn.Linear(16, 8)

    def forward(self, raw, keypoints):
        f = torch.relu(self.bn(self.lin(raw)))
        return dict(keypoints=keypoints, keypoint_features=f,
                    fusion_keypoint_features=self.fuse(f))


class MiddleEncoder(nn.Module):
    """Stand-in of PartA2's SparseUNet: per-voxel features (rows in the
    order of ``coors``) and the BEV map."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 16)
        self.bn = nn.BatchNorm1d(16)

    def forward(self, voxel_features, coors, batch_size):
        return dict(seg_features=torch.relu(self.bn(self.lin(
            voxel_features))))


class BEVTrunk(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(8), nn.ReLU())

    def forward(self, bev):
        return (self.conv(bev), )


def kitti_batch(B, seed):
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
    from mmengine.structures import InstanceData
    g = np.random.default_rng(seed)
    size = [[0.8, 0.6, 1.73], [1.76, 0.6, 1.73], [3.9, 1.6, 1.56]]
    data = dict(samples=[], sampling=[], points=[], pts_raw=[])
    for b in range(B):
        n = 2 + (b + seed) % 2
        labels = g.integers(0, 3, n)
        xy = np.stack([g.uniform(5, 65, n), g.uniform(-35, 35, n)], 1)
        boxes = torch.tensor([list(xy[k]) + [-1.0] + size[labels[k]] +
                              [float(g.uniform(-3, 3))] for k in range(n)],
                             dtype=torch.float32)
        ds = Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes,
                                           sample_idx=b))
        gt = InstanceData()
        gt.bboxes_3d = LiDARInstance3DBoxes(boxes)
        gt.labels_3d = torch.tensor(labels)
        ds.gt_instances_3d = gt
        data['samples'].append(ds)
        # given RoIs: jittered GT boxes (positives first), and IoUs
        pick = g.integers(0, n, R)
        rois = boxes[pick] + torch.tensor(g.normal(0, 0.3, (R, 7)),
                                          dtype=torch.float32)
        n_pos = 2 + b % 2
        iou = torch.tensor(np.r_[g.uniform(0.6, 0.95, n_pos),
                                 g.uniform(0.0, 0.5, R - n_pos)],
                           dtype=torch.float32)
        data['sampling'].append(SimpleNamespace(
            bboxes=rois, pos_bboxes=rois[:n_pos],
            pos_gt_bboxes=boxes[pick[:n_pos]],
            iou=iou))
        xyz = torch.tensor(np.c_[g.uniform(0, 70, NPTS),
                                 g.uniform(-40, 40, NPTS),
                                 g.uniform(-2, 0, NPTS)],
                           dtype=torch.float32)
        data['points'].append(torch.cat([torch.full((NPTS, 1), float(b)),
                                         xyz], 1))
        data['pts_raw'].append(torch.tensor(g.normal(size=(NPTS, 4)),
                                            dtype=torch.float32))
    data['bev'] = torch.tensor(g.normal(size=(B, 4, 8, 8)),
                               dtype=torch.float32)
    data['points'] = torch.cat(data['points'])
    data['pts_raw'] = torch.cat(data['pts_raw'])
    # semantic targets (given: get_targets needs points-in-boxes on CUDA)
    data['seg_targets'] = torch.tensor(g.integers(-1, 4, B * NPTS))
    data['part_targets'] = torch.tensor(g.uniform(0, 1, (B * NPTS, 3)),
                                        dtype=torch.float32)
    return data


# ---------------------------------------------------------------------------
# PV-RCNN
# ---------------------------------------------------------------------------
class PointVoxelRCNN(nn.Module):
    """Detector stand-in: the loss is the RPN's plus the RoI head's, in the
    order of mmdet3d 1.4's PointVoxelRCNN.loss."""

    def __init__(self):
        super().__init__()
        cfg = stock('pv_rcnn/pv_rcnn_8xb2-80e_kitti-3d-3class.py')
        self.backbone = BEVTrunk()
        self.rpn_head = rpn_of(cfg)
        self.points_encoder = PointsEncoder()
        roi = copy.deepcopy(cfg.roi_head)
        roi.semantic_head.update(in_channels=16)
        roi.bbox_head.update(in_channels=8, grid_size=2,
                             shared_fc_channels=(16, 16), cls_channels=(16, ),
                             reg_channels=(16, ), dropout_ratio=0.0)
        roi.update(train_cfg=cfg.train_cfg.rcnn, test_cfg=cfg.test_cfg.rcnn)
        self.roi_head = build(roi)
        self.roi_head.bbox_roi_extractor = RoIPool()

    def forward(self, inputs, data_samples=None, mode='loss'):
        d = inputs
        losses = {}
        rpn = self.rpn_head.loss(self.backbone(d['bev']),
                                 copy.deepcopy(data_samples))
        losses.update(rpn)
        pe = self.points_encoder(d['pts_raw'], d['points'])
        head = self.roi_head
        sem = head.semantic_head(pe['keypoint_features'])
        losses.update(head.semantic_head.loss(
            sem, dict(seg_targets=d['seg_targets'])))
        box = head._bbox_forward_train(sem['seg_preds'],
                                       pe['fusion_keypoint_features'],
                                       pe['keypoints'], d['sampling'])
        losses.update(box['loss_bbox'])
        return losses


def pv_reference(model, data, w, naive=False):
    """sum_b w_b L_b with every other sample's rows detached at the loss
    inputs: the RPN outputs, the segmentation loss's prediction, the box
    head outputs. (Not at the semantic head's output: seg_preds also feeds
    the RoI path, and detaching it there would cut sample b's box-loss
    gradient that reaches other keypoints through the box head's batch
    norm.) ``naive=True``: the wrong mechanism instead (seg_preds' gradient
    scaled at the semantic head output), which weights the RoI path through
    seg_preds twice."""
    head = model.roi_head
    kp_b = data['inputs']['points'][:, 0]
    zero([model])
    if naive:
        hooks = [head.semantic_head.register_forward_hook(
            lambda m, a, out: dict(seg_preds=scale_grad_by_index(
                out['seg_preds'], torch.tensor(w), kp_b)))]
        weighting = DetectorWeighting(model, terms=[
            'rpn_cls', 'rpn_bbox', 'rpn_dir', 'roi_cls', 'roi_bbox'])
        g = mechanism_grads(weighting, [model], lambda: model(**data), w)
        for h in hooks:
            h.remove()
        return g
    loss = 0
    for b in range(len(w)):
        state = {}
        hooks = [
            model.rpn_head.register_forward_hook(
                lambda m, a, out, b=b: detach_others(out, b)),
            head.semantic_head.loss_seg.register_forward_pre_hook(
                lambda m, a, b=b: (detach_others(a[0], b, index=kp_b), ) +
                tuple(a[1:])),
            head.bbox_roi_extractor.register_forward_pre_hook(
                lambda m, a: state.update(idx=a[3][:, 0])),
            head.bbox_head.register_forward_hook(
                lambda m, a, out, b=b: detach_others(out, b,
                                                     index=state['idx'])),
        ]
        try:
            loss = loss + w[b] * total(model(**data))
        finally:
            for h in hooks:
                h.remove()
    loss.backward()
    return grads_of([model])


def pv_data(B=3, seed=0, likelihoods=None):
    d = kitti_batch(B, seed)
    samples = d.pop('samples')
    if likelihoods is not None:
        for ds, p in zip(samples, likelihoods):
            ds.set_metainfo(dict(equity_likelihood=float(p)))
    return dict(inputs=d, data_samples=samples)


def test_pv_rcnn_weighting_is_exact_and_avoids_the_seg_preds_trap():
    torch.manual_seed(0)
    model = PointVoxelRCNN().train()
    data = pv_data()
    w = [0.55, 1.0, 0.8]
    state = copy.deepcopy(model.state_dict())
    weighting = DetectorWeighting(model)
    assert weighting.heads == ['PVRCNNRoiHead', 'PartA2RPNHead']
    assert weighting.terms == ('seg', 'roi_cls', 'roi_bbox', 'rpn_cls',
                               'rpn_bbox', 'rpn_dir')
    g_mech = mechanism_grads(weighting, [model], lambda: model(**data), w)
    model.load_state_dict(state)
    g_ref = pv_reference(model, data, w)
    assert_grads_equal(g_mech, g_ref)
    # the seg_preds path: scaling the semantic head output instead would be
    # w^2 on the RoI path through seg_preds.sigmoid() -- not the reference
    model.load_state_dict(state)
    g_naive = pv_reference(model, data, w, naive=True)
    seg = [(n, a) for n, a in g_ref if n.startswith('roi_head.semantic')]
    seg_naive = [(n, a) for n, a in g_naive
                 if n.startswith('roi_head.semantic')]
    assert max_diff(seg, seg_naive) > 1e-3 * max(
        a.abs().max().item() for _, a in seg)
    # off means off, and the weights matter
    model.load_state_dict(state)
    g_ones = mechanism_grads(DetectorWeighting(model), [model],
                             lambda: model(**data), [1.0] * 3)
    model.load_state_dict(state)
    zero([model])
    total(model(**data)).backward()
    g_plain = grads_of([model])
    for (n, a), (_, b) in zip(g_ones, g_plain):
        assert (a is None and b is None) or torch.equal(a, b), n
    assert max_diff(g_mech, g_plain) > 1e-4


def test_pv_rcnn_through_the_hook_with_term_selection():
    from mmdet3d_equity.engine.hooks import EquityHook
    model = PointVoxelRCNN()
    hook = EquityHook(loss=dict(type='GeneralizedFocalLoss',
                                terms=['rpn_cls', 'roi_bbox']))
    hook.install(model)
    parts = hook.weighting.parts
    assert [p.terms for p in parts] == [('roi_bbox', ), ('cls', )]
    assert hook.weighting.terms == ('roi_bbox', 'rpn_cls')
    hook.remove()
    with pytest.raises(ValueError, match='not loss terms of this detector'):
        DetectorWeighting(model, terms=['cls'])
    # only the RPN weighted: the RoI head's losses stay unweighted
    rpn_only = DetectorWeighting(model, terms=['rpn_cls', 'rpn_dir'])
    assert rpn_only.heads == ['PartA2RPNHead']
    assert rpn_only.terms == ('rpn_cls', 'rpn_dir')


# ---------------------------------------------------------------------------
# PartA2
# ---------------------------------------------------------------------------
class PartA2BboxHeadCPU(nn.Module):
    """Dense CPU forward with PartA2BboxHead's output layout (cls [R, 1],
    bbox [R, 7], RoI order); targets and losses are the real head's."""

    def __init__(self, real):
        super().__init__()
        self.fc = nn.Linear(16 + 4, 16)
        self.bn = nn.BatchNorm1d(16)
        self.cls = nn.Linear(16, 1)
        self.reg = nn.Linear(16, 7)
        self.__dict__['real'] = real  # not a submodule: no parameters

    def forward(self, seg_feats, part_feats):
        x = torch.cat([seg_feats, part_feats], -1).flatten(1, 3).mean(1)
        h = torch.relu(self.bn(self.fc(x)))
        return self.cls(h), self.reg(h)

    def get_targets(self, *args, **kw):
        return self.real.get_targets(*args, **kw)

    def loss(self, *args, **kw):
        return self.real.loss(*args, **kw)


class PartA2(nn.Module):
    """Detector stand-in in the order of TwoStage3DDetector.loss."""

    def __init__(self):
        super().__init__()
        cfg = stock('parta2/parta2_hv_secfpn_8xb2-cyclic-80e_kitti-3d-3class'
                    '.py')
        self.backbone = BEVTrunk()
        self.middle_encoder = MiddleEncoder()
        self.rpn_head = rpn_of(cfg)
        roi = copy.deepcopy(cfg.roi_head)
        roi.update(train_cfg=cfg.train_cfg.rcnn, test_cfg=cfg.test_cfg.rcnn)
        self.roi_head = build(roi)
        self.roi_head.seg_roi_extractor = RoIPool()
        self.roi_head.bbox_roi_extractor = RoIPool()
        self.roi_head.bbox_head = PartA2BboxHeadCPU(self.roi_head.bbox_head)

    def forward(self, inputs, data_samples=None, mode='loss'):
        d = inputs
        coors = torch.cat([d['points'][:, :1], d['points'][:, 1:]], 1)
        feats = self.middle_encoder(d['pts_raw'], coors, len(data_samples))
        losses = dict(self.rpn_head.loss(self.backbone(d['bev']),
                                         copy.deepcopy(data_samples)))
        head = self.roi_head
        voxels = dict(voxel_centers=d['points'][:, 1:], coors=coors)
        sem = head.semantic_head(feats['seg_features'])
        losses.update(head.semantic_head.loss(
            sem, dict(seg_targets=d['seg_targets'],
                      part_targets=d['part_targets'])))
        feats.update(sem)
        box = head._bbox_forward_train(feats, voxels, d['sampling'])
        losses.update(box['loss_bbox'])
        return losses


def test_parta2_weighting_is_exact():
    torch.manual_seed(0)
    model = PartA2().train()
    data = pv_data(seed=1)
    w = [0.55, 1.0, 0.8]
    weighting = DetectorWeighting(model)
    assert weighting.heads == ['PartAggregationROIHead', 'PartA2RPNHead']
    state = copy.deepcopy(model.state_dict())
    g_mech = mechanism_grads(weighting, [model], lambda: model(**data), w)
    model.load_state_dict(state)
    head = model.roi_head
    vox_b = data['inputs']['points'][:, 0]
    zero([model])
    loss = 0
    for b in range(3):
        st = {}
        hooks = [
            model.rpn_head.register_forward_hook(
                lambda m, a, out, b=b: detach_others(out, b)),
            head.semantic_head.register_forward_hook(
                lambda m, a, out, b=b: detach_others(out, b, index=vox_b)),
            head.bbox_roi_extractor.register_forward_pre_hook(
                lambda m, a: st.update(idx=a[3][:, 0])),
            head.bbox_head.register_forward_hook(
                lambda m, a, out, b=b: detach_others(out, b,
                                                     index=st['idx'])),
        ]
        loss = loss + w[b] * total(model(**data))
        for h in hooks:
            h.remove()
    loss.backward()
    g_ref = grads_of([model])
    assert_grads_equal(g_mech, g_ref)
    names = {n for n, a in g_mech if a is not None and a.abs().sum() > 0}
    assert any(n.startswith('roi_head.semantic_head') for n in names)
    assert any(n.startswith('roi_head.bbox_head') for n in names)
    assert any(n.startswith('rpn_head') for n in names)


def test_roi_heads_refuse_ssb_and_features():
    from mmdet3d_equity.models.head_adapters import adapter_for_head
    from mmdet3d_equity.semantic_scale.features import ObjectFeatureSampler
    model = PartA2()
    with pytest.raises(UnsupportedHeadError, match='class-agnostic'):
        adapter_for_head(model.roi_head).check_ssb(model.roi_head)
    with pytest.raises(UnsupportedHeadError, match='sampling result'):
        ObjectFeatureSampler(model, 3)


def test_roi_head_without_its_detector_is_refused():
    from mmdet3d_equity.models.sample_weighting import PerSampleGradWeighting
    model = PartA2()
    weighting = PerSampleGradWeighting(model.roi_head)
    with pytest.raises(UnsupportedHeadError, match='DetectorWeighting'):
        weighting.install()


def test_pv_rcnn_term_selection_weights_only_those_terms():
    """terms=['rpn_cls', 'roi_bbox']: those outputs weighted per sample,
    every other loss input unweighted (reference: selected parts of sample
    b, all else detached, summed with weights; plus the unselected parts of
    all samples, the selected ones detached)."""
    torch.manual_seed(2)
    model = PointVoxelRCNN().train()
    data = pv_data(seed=2)
    w = [0.4, 1.0, 0.7]
    state = copy.deepcopy(model.state_dict())
    g_mech = mechanism_grads(
        DetectorWeighting(model, terms=['rpn_cls', 'roi_bbox']), [model],
        lambda: model(**data), w)
    model.load_state_dict(state)
    head = model.roi_head

    def run(b):
        """b: sample whose selected parts keep their gradient (None: the
        unselected parts of all samples keep theirs)."""
        st = {}

        def rpn(m, a, out):
            cls, bbox, dirs = out
            if b is None:
                return ([c.detach() for c in cls], bbox, dirs)
            return (detach_others(cls, b), [t.detach() for t in bbox],
                    [t.detach() for t in dirs])

        def seg(m, a):
            pred = a[0] if b is None else a[0].detach()
            return (pred, ) + tuple(a[1:])

        def box(m, a, out):
            cls, reg = out
            if b is None:
                return cls, reg.detach()
            return cls.detach(), detach_others(reg, b, index=st['idx'])

        hooks = [model.rpn_head.register_forward_hook(rpn),
                 head.semantic_head.loss_seg.register_forward_pre_hook(seg),
                 head.bbox_roi_extractor.register_forward_pre_hook(
                     lambda m, a: st.update(idx=a[3][:, 0])),
                 head.bbox_head.register_forward_hook(box)]
        try:
            return total(model(**data))
        finally:
            for h in hooks:
                h.remove()

    zero([model])
    loss = sum(w[b] * run(b) for b in range(3)) + run(None)
    loss.backward()
    assert_grads_equal(g_mech, grads_of([model]))
