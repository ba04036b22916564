"""TransFusionHead (BEVFusion, projects/): exact per-sample weighting,
object features and SSB on the stand-in of _transfusion_standin.py (same
output layout and normalisers as mmdetection3d 1.4's head); the real head
runs the same checks in test_projects_heads.py when MMDET3D_ROOT is set."""
import copy

import pytest
import torch
from _grad_reference import (
    assert_grads_equal,
    check_family,
    detach_others,
    grads_of,
    mechanism_grads,
    total,
    zero,
)
from _transfusion_standin import OSF, PCR, VOXEL, BEVFusion, bev_batch

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity.models.head_adapters import (
    UnsupportedHeadError,
    adapter_for_head,
)
from mmdet3d_equity.models.sample_weighting import DetectorWeighting


def run_of(model, data):
    return lambda: model(**copy.deepcopy(data))


def test_transfusion_weighting_is_exact():
    torch.manual_seed(0)
    model = BEVFusion().train()
    data = bev_batch(3)
    adapter = adapter_for_head(model.bbox_head)
    assert type(adapter).__name__ == 'TransFusionHeadAdapter'
    assert adapter.head_class is None  # projects/ never imported
    check_family(model.bbox_head, [model], run_of(model, data),
                 [0.55, 1.0, 0.8], lambda: DetectorWeighting(model))


def test_transfusion_heatmap_term_only():
    torch.manual_seed(1)
    model = BEVFusion().train()
    data = bev_batch(2, seed=1)
    run = run_of(model, data)
    w = [0.3, 0.9]
    state = copy.deepcopy(model.state_dict())
    g = mechanism_grads(DetectorWeighting(model, terms=['heatmap']),
                        [model], run, w)
    model.load_state_dict(state)
    zero([model])

    def split(out, b=None):
        d = dict(out[0][0])
        for k, v in d.items():
            if k == 'dense_heatmap':
                d[k] = v.detach() if b is None else detach_others(v, b)
            elif b is not None and torch.is_tensor(v):
                d[k] = v.detach()
        return ([d], )

    loss = 0
    for b in range(2):
        h = model.bbox_head.register_forward_hook(
            lambda m, a, out, b=b: split(out, b))
        loss = loss + w[b] * total(run())
        h.remove()
    h = model.bbox_head.register_forward_hook(lambda m, a, out: split(out))
    loss = loss + total(run())
    h.remove()
    loss.backward()
    assert_grads_equal(g, grads_of([model]))


def test_unknown_transfusion_output_is_refused():
    model = BEVFusion(extra_heads=('iou', )).train()
    weighting = DetectorWeighting(model)
    weighting.install()
    weighting.activate(torch.ones(2))
    with pytest.raises(UnsupportedHeadError, match="'iou'"):
        model(**bev_batch(2))
    weighting.remove()


def test_transfusion_features_are_the_bev_input_at_the_heatmap_peak():
    from mmdet3d_equity.semantic_scale.features import ObjectFeatureSampler
    torch.manual_seed(0)
    model = BEVFusion()
    data = bev_batch(3, seed=2)
    sampler = ObjectFeatureSampler(model, 3, mode='nearest')
    assert 'rows along x' in sampler.describe()
    feats = [model.pts_backbone(data['inputs']['bev'])]
    f, lab = sampler(feats, data['data_samples'])
    # independent: the cell where the head's own heatmap target is 1
    want_f, want_l = [], []
    for b, ds in enumerate(data['data_samples']):
        gt = ds.gt_instances_3d
        for k in range(len(gt)):
            one = copy.deepcopy(gt[k:k + 1])
            hm = model.bbox_head.heatmap_target(one, 16, 16)
            c, r, col = (hm == 1).nonzero()[0].tolist()
            assert c == int(gt.labels_3d[k])
            want_f.append(feats[0][b, :, r, col])
            want_l.append(c)
    torch.testing.assert_close(f, torch.stack(want_f).detach())
    assert lab.tolist() == want_l
    # the cell size is voxel * out_size_factor from the point cloud range
    assert sampler.pcr == PCR and VOXEL[0] * OSF == 1.0


def test_transfusion_ssb_weights_the_query_classification():
    from mmdet3d_equity.models.losses.ssb_loss import HeadSSB
    torch.manual_seed(0)
    model = BEVFusion().eval()
    data = bev_batch(2, seed=3)
    head = model.bbox_head
    stock = head.loss_cls
    ssb = HeadSSB(head)
    cw = torch.tensor([0.5, 2.0, 1.25])
    ssb.loss.set_class_weights(cw.tolist())
    with torch.no_grad():
        got = model(**copy.deepcopy(data))
        feats = [model.pts_backbone(data['inputs']['bev'])]
        preds = head(feats, None)
        pred = preds[0][0]
        t = [head.targets_single(g.gt_instances_3d, pred, b)
             for b, g in enumerate(data['data_samples'])]
        labels = torch.stack([x[0] for x in t])
        label_w = torch.stack([x[1] for x in t])
        num_pos = sum(x[4] for x in t)
        P = head.num_proposals
        sl = slice(P, 2 * P)  # last layer
        score = pred['heatmap'][..., sl].permute(0, 2, 1).reshape(-1, 3)
        weight = label_w[:, sl].reshape(-1, 1).float() * cw[None]
        want = stock(score, labels[:, sl].reshape(-1), weight,
                     avg_factor=max(num_pos, 1))
    torch.testing.assert_close(got['layer_-1_loss_cls'], want)
    ssb.remove()
    assert head.loss_cls is stock


def test_bevfusion_detector_is_resolved_through_the_hook():
    from mmdet3d_equity.engine.hooks import EquityHook
    model = BEVFusion()
    hook = EquityHook(loss=dict(type='GeneralizedFocalLoss', terms=['cls',
                                                                    'bbox']))
    hook.install(model)
    assert hook.weighting.heads == ['TransFusionHead']
    assert hook.weighting.terms == ('cls', 'bbox')
    hook.remove()
