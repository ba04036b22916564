"""DETR-style query heads ([L, B, Q, ...] outputs): exact per-sample
weighting on mmdet's DETRHead family (installed wheel) and on a stand-in of
mmdetection3d's projects/PETR PETRHead (same output layout and
normalisers), registration by class name, the refusals, and the query
object features for SSB."""
import numpy as np
import pytest
import torch
from _grad_reference import check_family
from _query_helpers import C, L, Q, QueryTrunk, detr_head, samples_2d
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import nn

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity.models.head_adapters import (
    HEAD_ADAPTERS,
    UnsupportedHeadError,
    adapter_for_head,
    register_query_head,
)
from mmdet3d_equity.models.sample_weighting import (
    DetectorWeighting,
    PerSampleGradWeighting,
)


def detr_loss_fn(head, trunk, x, samples, kind):
    import copy

    def run():
        hidden = trunk(x)
        data = copy.deepcopy(samples)
        if kind == 'DETRHead':
            return head.loss(hidden, data)
        ref = torch.sigmoid(x[..., :2])  # [B, Q, 2]
        if kind == 'ConditionalDETRHead':
            return head.loss(hidden, ref, data)
        return head.loss(hidden, [ref] * (L + 1), None, None, data)
    return run


@pytest.mark.parametrize('kind', ['DETRHead', 'ConditionalDETRHead',
                                  'DeformableDETRHead'])
def test_mmdet_detr_heads_weighting_is_exact(kind):
    torch.manual_seed(0)
    head = detr_head(kind).train()
    trunk = QueryTrunk().train()
    B = 3
    x = torch.randn(B, Q, 8)
    samples = samples_2d(B)
    check_family(head, [trunk, head], detr_loss_fn(head, trunk, x, samples,
                                                   kind),
                 [0.55, 1.0, 0.8], lambda: PerSampleGradWeighting(head),
                 dim=1)
    assert type(adapter_for_head(head)).__name__ == f'{kind}Adapter'


def test_detr_term_selection_weights_only_cls():
    from _grad_reference import (
        assert_grads_equal,
        detach_others,
        grads_of,
        mechanism_grads,
        total,
        zero,
    )
    torch.manual_seed(1)
    head = detr_head().train()
    trunk = QueryTrunk().train()
    x, samples = torch.randn(2, Q, 8), samples_2d(2, seed=1)
    run = detr_loss_fn(head, trunk, x, samples, 'DETRHead')
    w = [0.4, 0.9]
    import copy
    state = copy.deepcopy((head.state_dict(), trunk.state_dict()))
    g_mech = mechanism_grads(PerSampleGradWeighting(head, terms=['cls']),
                             [trunk, head], run, w)
    head.load_state_dict(state[0])
    trunk.load_state_dict(state[1])
    zero([trunk, head])
    loss = 0
    for b in range(2):
        h = head.register_forward_hook(lambda m, a, out, b=b: (
            detach_others(out[0], b, 1), out[1].detach()))
        loss = loss + w[b] * total(run())
        h.remove()
    h = head.register_forward_hook(lambda m, a, out: (out[0].detach(),
                                                      out[1]))
    loss = loss + total(run())
    h.remove()
    loss.backward()
    assert_grads_equal(g_mech, grads_of([trunk, head]))


def test_two_stage_deformable_and_dino_are_refused():
    with pytest.raises(UnsupportedHeadError, match='as_two_stage'):
        PerSampleGradWeighting(detr_head('DeformableDETRHead',
                                         as_two_stage=True))

    from mmdet.models.dense_heads import DINOHead
    head = DINOHead.__new__(DINOHead)
    nn.Module.__init__(head)
    with pytest.raises(UnsupportedHeadError, match='denoising'):
        PerSampleGradWeighting(head)


# ---------------------------------------------------------------------------
# stand-in of projects/PETR PETRHead (not in the wheel): forward(mlvl_feats,
# img_metas) -> dict(all_cls_scores [L, B, Q, C], all_bbox_preds
# [L, B, Q, 10], enc_* None); the detector PETR calls forward, then
# loss_by_feat; per sample Hungarian on detached costs; cls avg_factor =
# num_pos + bg_cls_weight * num_neg (max 1), bbox avg_factor = num_pos
# (min 1)
# ---------------------------------------------------------------------------
class PETRHead(nn.Module):

    def __init__(self, num_classes=3, bg_cls_weight=0.1):
        super().__init__()
        from mmdet3d.registry import MODELS
        self.num_classes = num_classes
        self.bg_cls_weight = bg_cls_weight
        self.query = nn.Embedding(Q, C)
        self.mix = nn.Linear(C, C)
        self.cls_branches = nn.ModuleList(nn.Linear(C, num_classes)
                                          for _ in range(L))
        self.reg_branches = nn.ModuleList(nn.Linear(C, 10) for _ in range(L))
        self.loss_cls = MODELS.build(dict(type='mmdet.FocalLoss',
                                          use_sigmoid=True, gamma=2.0,
                                          alpha=0.25, loss_weight=2.0))
        self.loss_bbox = MODELS.build(dict(type='mmdet.L1Loss',
                                           loss_weight=0.25))
        self.code_weights = torch.tensor([1.0] * 8 + [0.2, 0.2])

    def forward(self, mlvl_feats, img_metas):
        x = mlvl_feats[0]  # [B, N, C, H, W]
        mem = x.flatten(3).mean(-1).mean(1)  # [B, C]
        h = self.query.weight[None] + self.mix(mem)[:, None]
        cls, reg = [], []
        for lvl in range(L):
            h = torch.relu(h)
            cls.append(self.cls_branches[lvl](h))
            reg.append(self.reg_branches[lvl](h))
        return dict(all_cls_scores=torch.stack(cls),
                    all_bbox_preds=torch.stack(reg), enc_cls_scores=None,
                    enc_bbox_preds=None)

    def _targets(self, cls, reg, gt_boxes, gt_labels):
        with torch.no_grad():
            cost = -cls.sigmoid()[:, gt_labels] + torch.cdist(
                reg[:, :3], gt_boxes[:, :3], p=1)
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        rows, cols = torch.as_tensor(rows), torch.as_tensor(cols)
        labels = torch.full((Q, ), self.num_classes, dtype=torch.long)
        labels[rows] = gt_labels[cols]
        targets = torch.zeros(Q, 10)
        weights = torch.zeros(Q, 10)
        targets[rows, :gt_boxes.shape[1]] = gt_boxes[cols]
        weights[rows] = 1.0
        return labels, torch.ones(Q), targets, weights, len(rows), Q - len(
            rows)

    def loss_by_feat(self, gt_bboxes_list, gt_labels_list, preds_dicts):
        losses = {}
        for lvl in range(L):
            cls = preds_dicts['all_cls_scores'][lvl]
            reg = preds_dicts['all_bbox_preds'][lvl]
            t = [self._targets(cls[b], reg[b], gt_bboxes_list[b],
                               gt_labels_list[b]) for b in range(len(cls))]
            labels, lw, bt, bw = (torch.cat([x[i] for x in t])
                                  for i in range(4))
            num_pos = sum(x[4] for x in t)
            num_neg = sum(x[5] for x in t)
            cls_avg = max(num_pos * 1.0 + num_neg * self.bg_cls_weight, 1)
            loss_cls = self.loss_cls(cls.reshape(-1, self.num_classes),
                                     labels, lw, avg_factor=cls_avg)
            loss_bbox = self.loss_bbox(reg.reshape(-1, 10), bt,
                                       bw * self.code_weights,
                                       avg_factor=max(num_pos, 1))
            pre = '' if lvl == L - 1 else f'd{lvl}.'
            losses[pre + 'loss_cls'] = torch.nan_to_num(loss_cls)
            losses[pre + 'loss_bbox'] = torch.nan_to_num(loss_bbox)
        return losses


class PETR(nn.Module):
    """Detector stand-in: the whole loss is pts_bbox_head's."""

    def __init__(self):
        super().__init__()
        self.img_backbone = nn.Sequential(nn.Conv2d(3, C, 3, padding=1),
                                          nn.BatchNorm2d(C), nn.ReLU())
        self.pts_bbox_head = PETRHead()

    def forward(self, inputs, data_samples=None, mode='loss'):
        img = inputs['imgs']  # [B, N, 3, H, W]
        B, N = img.shape[:2]
        feats = self.img_backbone(img.flatten(0, 1))
        feats = feats.view(B, N, *feats.shape[1:])
        metas = [ds.metainfo for ds in data_samples]
        outs = self.pts_bbox_head([feats], metas)
        gt = [ds.gt_instances_3d for ds in data_samples]
        return self.pts_bbox_head.loss_by_feat(
            [g.bboxes_3d for g in gt], [g.labels_3d for g in gt], outs)


def petr_batch(B, seed=0, likelihoods=None):
    from mmdet3d.structures import Det3DDataSample
    g = np.random.default_rng(seed)
    samples = []
    for b in range(B):
        n = 1 + (b + seed) % 3
        meta = dict(sample_idx=b)
        if likelihoods is not None:
            meta['equity_likelihood'] = float(likelihoods[b])
        ds = Det3DDataSample(metainfo=meta)
        gt = InstanceData()
        gt.bboxes_3d = torch.tensor(g.uniform(-1, 1, (n, 9)),
                                    dtype=torch.float32)
        gt.labels_3d = torch.tensor(g.integers(0, 3, n))
        ds.gt_instances_3d = gt
        samples.append(ds)
    imgs = torch.tensor(g.normal(size=(B, 2, 3, 6, 8)), dtype=torch.float32)
    return dict(inputs=dict(imgs=imgs), data_samples=samples)


def test_petr_standin_is_resolved_by_name_and_weighted_exactly():
    from mmdet3d_equity.engine.hooks import EquityHook
    torch.manual_seed(0)
    model = PETR().train()
    data = petr_batch(3)
    adapter = adapter_for_head(model.pts_bbox_head)
    assert type(adapter).__name__ == 'PETRHeadAdapter'
    assert adapter.head_class is None  # projects/ never imported
    head = model.pts_bbox_head
    check_family(head, [model], lambda: model(**data),
                 [0.3, 1.0, 0.7], lambda: DetectorWeighting(model), dim=1)
    # and through the hook: the detector type name selects the head
    hook = EquityHook()
    hook.install(model)
    assert hook.weighting.heads == ['PETRHead']
    hook.remove()


def test_petr_features_are_refused_with_what_is_missing():
    from mmdet3d_equity.semantic_scale.features import ObjectFeatureSampler
    with pytest.raises(UnsupportedHeadError, match='decoder states'):
        ObjectFeatureSampler(PETR(), 3)


def test_one_line_registration_of_a_bevformer_style_head():

    class BEVFormerHead(PETRHead):  # another repository's head
        pass

    class BEVFormer(PETR):

        def __init__(self):
            super().__init__()
            self.pts_bbox_head = BEVFormerHead()

    model = BEVFormer()
    with pytest.raises(UnsupportedHeadError,
                       match='detector BEVFormer is not supported'):
        DetectorWeighting(model)
    cls = register_query_head('BEVFormerHead',
                              detectors=dict(BEVFormer='pts_bbox_head'))
    try:
        torch.manual_seed(3)
        model = BEVFormer().train()
        data = petr_batch(2, seed=3)
        check_family(model.pts_bbox_head, [model], lambda: model(**data),
                     [0.5, 0.9], lambda: DetectorWeighting(model), dim=1)
    finally:
        HEAD_ADAPTERS.module_dict.pop(cls.__name__)
    with pytest.raises(ValueError, match='class name'):
        register_query_head('not a name', dict(A='b'))


def test_detr3d_refusal_names_the_reason_and_the_fix():

    class DETR3DHead(PETRHead):
        pass

    class DETR3D(PETR):

        def __init__(self):
            super().__init__()
            self.pts_bbox_head = DETR3DHead()

    with pytest.raises(UnsupportedHeadError) as e:
        DetectorWeighting(DETR3D())
    msg = str(e.value)
    assert "unexpected keyword argument 'transformer'" in msg
    assert "register_query_head('DETR3DHead'" in msg


def test_query_features_are_the_matched_decoder_embeddings():
    """SSB features of mmdet's DETRHead: hidden_states[-1, b, q] of the
    queries the head's own targets match, labelled with the GT class."""
    from mmdet3d_equity.semantic_scale.features import (
        HeadInputCapture,
        ObjectFeatureSampler,
    )
    torch.manual_seed(0)

    class DETR(nn.Module):

        def __init__(self):
            super().__init__()
            self.trunk = QueryTrunk()
            self.bbox_head = detr_head()

        def forward(self, inputs, data_samples=None, mode='loss'):
            return self.bbox_head.loss(self.trunk(inputs), data_samples)

    model = DETR().train()
    x, samples = torch.randn(2, Q, 8), samples_2d(2, seed=2)
    sampler = ObjectFeatureSampler(model, 3)
    got = []
    cap = HeadInputCapture(model, model.bbox_head,
                           lambda f, s: got.append(sampler(f, s)))
    model(x, samples, mode='loss')
    cap.remove()
    (feats, labels), = got
    # independent: match with scipy on the same cost the assigner uses
    with torch.no_grad():
        hidden = model.trunk(x)  # BN in train mode: same batch statistics
        cls, box = model.bbox_head(hidden)
    want_f, want_l = [], []
    for b, ds in enumerate(samples):
        gt = ds.gt_instances
        H, W = ds.metainfo['img_shape']
        f = torch.tensor([W, H, W, H], dtype=torch.float32)
        cxcywh = box[-1, b]
        pred = torch.cat([cxcywh[:, :2] - cxcywh[:, 2:] / 2,
                          cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1) * f
        from mmdet.structures.bbox import bbox_overlaps
        cost = (-cls[-1, b].softmax(-1)[:, gt.labels] +
                5.0 * torch.cdist(cxcywh, _xyxy_to_cxcywh(gt.bboxes / f),
                                  p=1) -
                2.0 * bbox_overlaps(pred, gt.bboxes, mode='giou'))
        rows, cols = linear_sum_assignment(cost.numpy())
        order = np.argsort(rows)
        want_f.append(hidden[-1, b, rows[order]])
        want_l.append(gt.labels[cols[order]])
    torch.testing.assert_close(feats, torch.cat(want_f))
    assert torch.equal(labels, torch.cat(want_l))
    assert len(labels) == sum(len(ds.gt_instances) for ds in samples)


def _xyxy_to_cxcywh(b):
    return torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], 1)


def test_ssb_hook_on_a_detr_head_stores_the_matched_queries():
    """SemanticScaleBalanceHook on mmdet's DETRHead: the stock softmax
    CrossEntropyLoss is wrapped, and one loss forward stores one feature
    per ground-truth object (the matched query's decoder embedding)."""
    from mmdet3d.registry import HOOKS

    from mmdet3d_equity.models.losses import SemanticScaleBalancedLoss
    from mmdet3d_equity.semantic_scale.store import ClassFeatureStore

    class DETR(nn.Module):

        def __init__(self):
            super().__init__()
            self.trunk = QueryTrunk()
            self.bbox_head = detr_head()

        def forward(self, inputs, data_samples=None, mode='loss'):
            return self.bbox_head.loss(self.trunk(inputs), data_samples)

    torch.manual_seed(0)
    model = DETR().train()
    stock = model.bbox_head.loss_cls
    hook = HOOKS.build(dict(type='SemanticScaleBalanceHook', warmup_iters=1))
    hook.install(model)
    try:
        assert isinstance(model.bbox_head.loss_cls, SemanticScaleBalancedLoss)
        assert hook.ssb.loss.kind == 'ce_softmax'
        assert hook.ssb.loss.num_classes == 3
        hook.store = ClassFeatureStore(3, 16)
        samples = samples_2d(3, seed=5)
        model(torch.randn(3, Q, 8), samples, mode='loss')
        n_obj = sum(len(ds.gt_instances) for ds in samples)
        assert int(hook.store.counts().sum()) == n_obj
    finally:
        hook.remove()
    assert model.bbox_head.loss_cls is stock
