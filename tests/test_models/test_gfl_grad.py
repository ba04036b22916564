"""Exactness of the per-sample DatasetEquity weighting on mmdet3d dense heads.

For each head family the gradient of every parameter (a batch-norm trunk in
front of the head included) under the weighting mechanism must equal the
gradient of an independently computed reference:
    sum_b w_b * L_b,   L_b = the head loss with all other samples' outputs
                             detached (so only sample b's terms carry grad).
"""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from torch import nn

import mmdet3d_equity  # noqa: F401  (registers)
from mmdet3d_equity.models.head_adapters import adapter_for_head
from mmdet3d_equity.models.sample_weighting import (
    PerSampleGradWeighting,
    UnsupportedHeadError,
)

CFG_DIR = None


def stock_cfg(rel):
    import mmdet3d
    from mmengine.config import Config
    path = osp.join(osp.dirname(mmdet3d.__file__), '.mim', 'configs', rel)
    return Config.fromfile(path)


def _setup_scope():
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)


# --------------------------------------------------------------------------
# heads and synthetic inputs
# --------------------------------------------------------------------------
class Trunk(nn.Module):
    """A conv + batch-norm trunk: couples samples in the forward pass."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


def build_anchor3d_head(C=8):
    from mmdet3d.registry import MODELS
    cfg = stock_cfg('_base_/models/pointpillars_hv_secfpn_kitti.py').model
    head = copy.deepcopy(cfg.bbox_head)
    head.update(in_channels=C, feat_channels=C, train_cfg=cfg.train_cfg,
                test_cfg=cfg.test_cfg)
    return MODELS.build(head)


def anchor3d_batch(B, gen):
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
    from mmengine.structures import InstanceData
    # 8x8 feature map over x [0, 69.12], y [-39.68, 39.68]
    cx = lambda i: 69.12 / 8 * (i + 0.5)  # noqa: E731
    cy = lambda j: -39.68 + 79.36 / 8 * (j + 0.5)  # noqa: E731
    samples = []
    for b in range(B):
        boxes, labels = [], []
        for k in range(2 + b % 2):
            i, j = int(gen.integers(0, 8)), int(gen.integers(0, 8))
            label = int(gen.integers(0, 3))
            size = [[0.8, 0.6, 1.73], [1.76, 0.6, 1.73], [3.9, 1.6,
                                                          1.56]][label]
            z = -1.78 if label == 2 else -0.6
            boxes.append([cx(i) + 0.2, cy(j) - 0.1, z] + size +
                         [float(gen.choice([0.0, 1.57])) + 0.1])
            labels.append(label)
        ds = Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes,
                                           sample_idx=b))
        gt = InstanceData()
        gt.bboxes_3d = LiDARInstance3DBoxes(torch.tensor(boxes))
        gt.labels_3d = torch.tensor(labels)
        ds.gt_instances_3d = gt
        samples.append(ds)
    return samples


def build_center_head(C=8):
    from mmdet3d.registry import MODELS
    cfg = stock_cfg('_base_/models/centerpoint_pillar02_second_secfpn_nus.py'
                    ).model
    head = copy.deepcopy(cfg.pts_bbox_head)
    head.update(
        in_channels=C,
        share_conv_channel=8,
        tasks=[
            dict(num_class=1, class_names=['car']),
            dict(num_class=2, class_names=['truck', 'pedestrian']),
        ])
    head.bbox_coder.update(voxel_size=[3.2, 3.2], pc_range=[-51.2, -51.2])
    train_cfg = copy.deepcopy(cfg.train_cfg.pts)
    train_cfg.update(grid_size=[32, 32, 1], voxel_size=[3.2, 3.2, 8],
                     point_cloud_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 3.0])
    head.update(train_cfg=train_cfg, test_cfg=cfg.test_cfg.pts)
    return MODELS.build(head)


def center_batch(B, gen, same_gt=False):
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
    from mmengine.structures import InstanceData
    samples = []
    for b in range(B):
        g = np.random.default_rng(7) if same_gt else gen
        n = 3 if same_gt else 2 + b % 2
        xy = g.uniform(-40, 40, size=(n, 2))
        boxes = np.concatenate([
            xy, g.uniform(-1, 0, (n, 1)), g.uniform(1, 4, (n, 3)),
            g.uniform(-3, 3, (n, 1)), g.uniform(-1, 1, (n, 2))
        ], 1)
        ds = Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes,
                                           sample_idx=b))
        gt = InstanceData()
        gt.bboxes_3d = LiDARInstance3DBoxes(
            torch.tensor(boxes, dtype=torch.float32), box_dim=9)
        gt.labels_3d = torch.tensor(g.integers(0, 3, n))
        ds.gt_instances_3d = gt
        samples.append(ds)
    return samples


def _mono_common(head):
    from mmdet3d.registry import MODELS
    return MODELS.build(head)


def build_fcos3d_head(C=8):
    cfg = stock_cfg('_base_/models/fcos3d.py').model
    head = copy.deepcopy(cfg.bbox_head)
    head.update(in_channels=C, feat_channels=C, strides=[8, 16],
                regress_ranges=((-1, 48), (48, 1e8)), cls_branch=(C, ),
                reg_branch=((C, ), (C, ), (C, ), (C, ), ()),
                dir_branch=(C, ), attr_branch=(C, ), dcn_on_last_conv=False,
                norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
                train_cfg=cfg.train_cfg, test_cfg=cfg.test_cfg)
    return _mono_common(head)


def build_pgd_head(C=8, use_depth_classifier=False):
    cfg = stock_cfg('_base_/models/pgd.py').model
    head = copy.deepcopy(cfg.bbox_head)
    head.update(in_channels=C, feat_channels=C, strides=[8, 16],
                regress_ranges=((-1, 48), (48, 1e8)), cls_branch=(C, ),
                reg_branch=((C, ), (C, ), (C, ), (C, ), ()),
                dir_branch=(C, ), attr_branch=(C, ), dcn_on_last_conv=False,
                depth_branch=(C, ), weight_dim=1, weight_branch=((C, ), ),
                use_depth_classifier=use_depth_classifier,
                norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
                train_cfg=cfg.train_cfg, test_cfg=cfg.test_cfg)
    return _mono_common(head)


def mono_batch(B, gen, H=64, W=96, with_velo=True, with_kpts=False):
    from mmdet3d.structures import CameraInstance3DBoxes, Det3DDataSample
    from mmengine.structures import InstanceData
    cam2img = [[60.0, 0.0, W / 2, 0.0], [0.0, 60.0, H / 2, 0.0],
               [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    samples = []
    for b in range(B):
        n = 2 + b % 2
        depth = gen.uniform(8, 30, n)
        u = gen.uniform(15, W - 15, n)
        v = gen.uniform(15, H - 15, n)
        x = (u - W / 2) * depth / 60.0
        y = (v - H / 2) * depth / 60.0
        dims = gen.uniform(1, 3, (n, 3))
        rot = gen.uniform(-3, 3, n)
        cols = [x, y + dims[:, 1] / 2, depth, dims[:, 0], dims[:, 1],
                dims[:, 2], rot]
        if with_velo:
            cols += [gen.uniform(-1, 1, n), gen.uniform(-1, 1, n)]
        boxes = np.stack(cols, 1)
        half = 60.0 * dims[:, :2].max(1) / depth
        bb2d = np.stack([u - half, v - half, u + half, v + half], 1)
        bb2d = np.clip(bb2d, 0, [W - 1, H - 1, W - 1, H - 1])
        labels = gen.integers(0, 3, n)
        ds = Det3DDataSample(metainfo=dict(
            box_type_3d=CameraInstance3DBoxes, cam2img=cam2img,
            pad_shape=(H, W), img_shape=(H, W), scale_factor=1.0,
            trans_mat=np.array([[0.25, 0, 0], [0, 0.25, 0], [0, 0, 1]],
                               dtype=np.float32),
            affine_aug=False, sample_idx=b))
        gt3 = InstanceData()
        gt3.bboxes_3d = CameraInstance3DBoxes(
            torch.tensor(boxes, dtype=torch.float32),
            box_dim=boxes.shape[1], origin=(0.5, 0.5, 0.5))
        gt3.labels_3d = torch.tensor(labels)
        gt3.centers_2d = torch.tensor(np.stack([u, v], 1),
                                      dtype=torch.float32)
        gt3.depths = torch.tensor(depth, dtype=torch.float32)
        gt3.attr_labels = torch.tensor(gen.integers(0, 9, n))
        gt2 = InstanceData()
        gt2.bboxes = torch.tensor(bb2d, dtype=torch.float32)
        gt2.labels = torch.tensor(labels)
        ds.gt_instances_3d = gt3
        ds.gt_instances = gt2
        samples.append(ds)
    return samples


def build_smoke_head(C=8):
    cfg = stock_cfg('_base_/models/smoke.py').model
    head = copy.deepcopy(cfg.bbox_head)
    head.update(in_channels=C, feat_channels=C, cls_branch=(C, ),
                reg_branch=((C, ), ),
                norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
                train_cfg=cfg.train_cfg, test_cfg=cfg.test_cfg)
    return _mono_common(head)


# family -> (head builder, batch builder, feature map sizes, input channels)
FAMILIES = {
    'Anchor3DHead': (build_anchor3d_head, anchor3d_batch, [(8, 8)]),
    'CenterHead': (build_center_head, center_batch, [(8, 8)]),
    'FCOSMono3DHead': (build_fcos3d_head,
                       lambda B, g: mono_batch(B, g, with_velo=True),
                       [(8, 12), (4, 6)]),
    'PGDHead': (build_pgd_head, lambda B, g: mono_batch(B, g, with_velo=True),
                [(8, 12), (4, 6)]),
    'SMOKEMono3DHead': (build_smoke_head,
                        lambda B, g: mono_batch(B, g, with_velo=False),
                        [(16, 24)]),
}


def make_setup(family, B=3, seed=0):
    _setup_scope()
    torch.manual_seed(seed)
    build_head, build_batch, sizes = FAMILIES[family]
    head = build_head()
    head.train()
    trunks = nn.ModuleList([Trunk(4, 8) for _ in sizes])
    gen = np.random.default_rng(seed)
    samples = build_batch(B, gen)
    xs = [torch.randn(B, 4, h, w) for (h, w) in sizes]
    return head, trunks, samples, xs


def feats_of(trunks, xs):
    feats = [t(x) for t, x in zip(trunks, xs)]
    return feats if len(feats) > 1 else (feats if False else feats)


def head_input(family, feats):
    return feats if family == 'CenterHead' else tuple(feats)


def fresh(samples):
    # mmdet3d's FCOS3D/PGD get_targets rewrite the gt boxes in place (local
    # yaw), so every loss call gets its own copy of the batch
    return copy.deepcopy(samples)


def _detach_others(obj, b):
    if torch.is_tensor(obj):
        mask = torch.zeros(obj.shape[0], dtype=torch.bool)
        mask[b] = True
        mask = mask.view((-1, ) + (1, ) * (obj.dim() - 1))
        return torch.where(mask, obj, obj.detach())
    if isinstance(obj, dict):
        return {k: _detach_others(v, b) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detach_others(v, b) for v in obj)
    return obj


def total(losses):
    out = 0
    for v in losses.values():
        if isinstance(v, (list, tuple)):
            out = out + sum(v)
        else:
            out = out + v
    return out


def params_and_grads(modules):
    return [(n, p.grad.clone() if p.grad is not None else None)
            for m in modules for n, p in m.named_parameters()]


def reference_grads(family, head, trunks, samples, xs, w, select=None):
    """Independent reference: sum_b w_b * L_b, others detached."""
    head.zero_grad()
    trunks.zero_grad()
    feats = [t(x) for t, x in zip(trunks, xs)]
    loss = 0
    for b in range(len(samples)):
        handle = head.register_forward_hook(
            lambda m, a, out, b=b: _detach_others(out, b))
        try:
            losses = head.loss(head_input(family, feats), fresh(samples))
        finally:
            handle.remove()
        loss = loss + float(w[b]) * total(losses)
    if select is not None:
        # the unselected terms: unweighted, once (all samples)
        handle = head.register_forward_hook(
            lambda m, a, out: select(out))
        try:
            losses = head.loss(head_input(family, feats), fresh(samples))
        finally:
            handle.remove()
        loss = loss + total(losses)
    loss.backward()
    return params_and_grads([trunks, head]), float(loss.detach())


def mechanism_grads(family, head, trunks, samples, xs, w, terms='all'):
    head.zero_grad()
    trunks.zero_grad()
    weighting = PerSampleGradWeighting(head, terms=terms)
    weighting.install()
    try:
        with weighting.active(torch.as_tensor(w)):
            feats = [t(x) for t, x in zip(trunks, xs)]
            losses = head.loss(head_input(family, feats), fresh(samples))
        assert weighting.calls == 1
    finally:
        weighting.remove()
    total(losses).backward()
    return params_and_grads([trunks, head])


def assert_grads_equal(g1, g2, rtol=1e-4, atol_frac=1e-5):
    # float32 reductions in different orders: tolerance relative to the
    # largest gradient entry; a wrong weighting is off by ~10-50%
    scale = max(a.abs().max().item() for _, a in g1 if a is not None)
    atol = atol_frac * scale
    assert len(g1) == len(g2)
    n_nonzero = 0
    for (n1, a), (n2, b) in zip(g1, g2):
        assert n1 == n2
        if a is None or b is None:
            assert a is None and b is None, n1
            continue
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=n1)
        n_nonzero += int(a.abs().sum() > 0)
    assert n_nonzero > 0


@pytest.mark.parametrize('family', list(FAMILIES))
def test_per_sample_weighting_matches_hand_weighted_reference(family):
    # batch of 3 (2 for the slower monocular heads), unequal weights
    B = 2 if family in ('FCOSMono3DHead', 'PGDHead') else 3
    head, trunks, samples, xs = make_setup(family, B=B)
    w = [0.55, 1.0, 0.8][:B]
    state = copy.deepcopy((head.state_dict(), trunks.state_dict()))
    g_mech = mechanism_grads(family, head, trunks, samples, xs, w)
    head.load_state_dict(state[0])
    trunks.load_state_dict(state[1])
    g_ref, _ = reference_grads(family, head, trunks, samples, xs, w)
    assert_grads_equal(g_mech, g_ref)
    # and it is not the unweighted gradient (the test can fail)
    head.load_state_dict(state[0])
    trunks.load_state_dict(state[1])
    g_plain, _ = reference_grads(family, head, trunks, samples, xs,
                                 [1.0] * B)
    diffs = [(a - b).abs().max().item() for (_, a), (_, b) in
             zip(g_mech, g_plain) if a is not None]
    assert max(diffs) > 1e-4


@pytest.mark.parametrize('family', ['Anchor3DHead', 'CenterHead'])
def test_term_selection_weights_only_those_terms(family):
    head, trunks, samples, xs = make_setup(family, B=2, seed=1)
    w = [0.5, 0.9]
    if family == 'Anchor3DHead':
        terms = ['cls']

        def unselected(out):  # bbox + dir of all samples, cls detached
            cls, bbox, dirs = out
            return ([c.detach() for c in cls], bbox, dirs)

        def selected_only(out, b):
            cls, bbox, dirs = out
            return (_detach_others(cls, b), [t.detach() for t in bbox],
                    [t.detach() for t in dirs])
    else:
        terms = ['heatmap', 'rot']

        def unselected(out):
            return type(out)([[{k: (v.detach() if k in terms else v)
                                for k, v in d.items()} for d in lv]
                              for lv in out])

        def selected_only(out, b):
            return type(out)([[{k: (_detach_others(v, b) if k in terms else
                                    v.detach()) for k, v in d.items()}
                               for d in lv] for lv in out])
    state = copy.deepcopy((head.state_dict(), trunks.state_dict()))
    g_mech = mechanism_grads(family, head, trunks, samples, xs, w,
                             terms=terms)
    head.load_state_dict(state[0])
    trunks.load_state_dict(state[1])
    # reference: sum_b w_b * (selected terms of b) + all unselected terms
    head.zero_grad()
    trunks.zero_grad()
    feats = [t(x) for t, x in zip(trunks, xs)]
    loss = 0
    for b in range(2):
        h = head.register_forward_hook(
            lambda m, a, out, b=b: selected_only(out, b))
        loss = loss + w[b] * total(head.loss(head_input(family, feats),
                                             fresh(samples)))
        h.remove()
    h = head.register_forward_hook(lambda m, a, out: unselected(out))
    loss = loss + total(head.loss(head_input(family, feats), fresh(samples)))
    h.remove()
    loss.backward()
    assert_grads_equal(g_mech, params_and_grads([trunks, head]))


def test_all_ones_weights_reproduce_the_stock_step_exactly():
    family = 'Anchor3DHead'
    head, trunks, samples, xs = make_setup(family, B=2, seed=2)
    state = copy.deepcopy((head.state_dict(), trunks.state_dict()))

    def step(weighted):
        head.load_state_dict(state[0])
        trunks.load_state_dict(state[1])
        params = list(trunks.parameters()) + list(head.parameters())
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
        opt.zero_grad()
        if weighted:
            weighting = PerSampleGradWeighting(head)
            weighting.install()
            with weighting.active(torch.ones(2)):
                feats = [t(x) for t, x in zip(trunks, xs)]
                losses = head.loss(tuple(feats), fresh(samples))
            weighting.remove()
        else:
            feats = [t(x) for t, x in zip(trunks, xs)]
            losses = head.loss(tuple(feats), fresh(samples))
        total(losses).backward()
        opt.step()
        return [p.detach().clone() for p in params]

    for a, b in zip(step(True), step(False)):
        assert torch.equal(a, b)


def test_inactive_and_removed_weighting_leaves_head_unchanged():
    head, trunks, samples, xs = make_setup('SMOKEMono3DHead', B=2)
    weighting = PerSampleGradWeighting(head)
    weighting.install()
    feats = tuple(t(x) for t, x in zip(trunks, xs))
    out = head(feats)  # not active: nothing wrapped
    assert all(o.grad_fn is None or 'ScaleGrad' not in type(o.grad_fn).__name__
               for lv in out for o in lv)
    weighting.remove()
    assert not head._forward_hooks


def test_batch_dim_mismatch_is_refused():
    head, trunks, samples, xs = make_setup('Anchor3DHead', B=2)
    weighting = PerSampleGradWeighting(head)
    weighting.install()
    with pytest.raises(RuntimeError, match='batch'):
        with weighting.active(torch.ones(3)):
            head(tuple(t(x) for t, x in zip(trunks, xs)))
    weighting.remove()


def test_unsupported_heads_are_refused():
    _setup_scope()
    from mmdet3d.models.dense_heads import Anchor3DHead
    from mmdet3d.registry import MODELS

    class MyHead(Anchor3DHead):
        pass

    cfg = stock_cfg('_base_/models/pointpillars_hv_secfpn_kitti.py').model
    kw = dict(cfg.bbox_head)
    kw.pop('type')
    kw.update(in_channels=8, feat_channels=8)
    with pytest.raises(UnsupportedHeadError, match='subclasses are refused'):
        PerSampleGradWeighting(MyHead(**kw))
    with pytest.raises(UnsupportedHeadError, match='does not support'):
        PerSampleGradWeighting(nn.Conv2d(2, 2, 1))
    # PGD with its learnable depth fusion in the loss cannot be exact
    with pytest.raises(UnsupportedHeadError, match='fuse_lambda'):
        PerSampleGradWeighting(build_pgd_head(use_depth_classifier=True))
    del MODELS


def test_bad_terms_are_refused():
    head, _, _, _ = make_setup('Anchor3DHead', B=1)
    with pytest.raises(ValueError, match='not loss terms of Anchor3DHead'):
        PerSampleGradWeighting(head, terms=['heatmap'])
    with pytest.raises(ValueError, match="'all'"):
        PerSampleGradWeighting(head, terms='everything')
    with pytest.raises(ValueError, match='empty'):
        PerSampleGradWeighting(head, terms=[])
    head.use_direction_classifier = False
    with pytest.raises(ValueError, match='does not produce'):
        PerSampleGradWeighting(head, terms=['dir'])
    assert adapter_for_head(head).terms == ('cls', 'bbox', 'dir')
