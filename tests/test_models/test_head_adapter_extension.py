"""A head family added from user code: one adapter, registered in
HEAD_ADAPTERS, makes DatasetEquity (exact per-sample weighting) and SSB
(class weights + object features) work on a head the plugin has never seen.
The head, the detector and the adapter below are the worked example of
docs/extending.md."""
import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
from mmengine.structures import InstanceData
from torch import nn

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity import equity_weight
from mmdet3d_equity.models.head_adapters import HEAD_ADAPTERS, BEVHeadAdapter

PCR = [0.0, -8.0, -3.0, 16.0, 8.0, 1.0]  # 16 m x 16 m, one map cell = 2 m


# ---------------------------------------------------------------------------
# the user's head and detector
# ---------------------------------------------------------------------------
class ToyBEVHead(nn.Module):
    """A dense BEV head: a class heatmap and a 2-d centre offset per cell.
    The GT centre's cell is positive; losses are normalised by the number of
    positives (a function of the targets only)."""

    def __init__(self, in_channels=8, num_classes=3,
                 point_cloud_range=PCR,
                 loss_cls=dict(type='mmdet.FocalLoss', use_sigmoid=True,
                               gamma=2.0, alpha=0.25, loss_weight=1.0),
                 loss_bbox=dict(type='mmdet.L1Loss', loss_weight=0.5)):
        super().__init__()
        self.num_classes = num_classes
        self.pcr = point_cloud_range
        self.conv_cls = nn.Conv2d(in_channels, num_classes, 1)
        self.conv_reg = nn.Conv2d(in_channels, 2, 1)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)

    def forward(self, feats):
        x = feats[0]
        return [self.conv_cls(x)], [self.conv_reg(x)]

    def targets(self, data_samples, H, W):
        x0, y0, _, x1, y1, _ = self.pcr
        labels = torch.full((len(data_samples), H, W), self.num_classes)
        offsets = torch.zeros(len(data_samples), 2, H, W)
        for b, ds in enumerate(data_samples):
            xy = ds.gt_instances_3d.bboxes_3d.tensor[:, :2]
            px = (xy[:, 0] - x0) / (x1 - x0) * W
            py = (xy[:, 1] - y0) / (y1 - y0) * H
            for k in range(len(xy)):
                i, j = int(py[k]), int(px[k])
                labels[b, i, j] = ds.gt_instances_3d.labels_3d[k]
                offsets[b, :, i, j] = torch.stack([px[k] - j, py[k] - i])
        return labels, offsets

    def loss(self, feats, data_samples):
        (cls,), (reg,) = self(feats)
        B, K, H, W = cls.shape
        labels, offsets = self.targets(data_samples, H, W)
        pos = labels != self.num_classes
        num_pos = max(int(pos.sum()), 1)
        loss_cls = self.loss_cls(cls.permute(0, 2, 3, 1).reshape(-1, K),
                                 labels.reshape(-1), avg_factor=num_pos)
        reg = reg.permute(0, 2, 3, 1)[pos]
        loss_bbox = self.loss_bbox(reg, offsets.permute(0, 2, 3, 1)[pos],
                                   avg_factor=num_pos)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)


class ToyDetector(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1),
                                      nn.BatchNorm2d(8), nn.ReLU())
        self.bbox_head = ToyBEVHead()

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = (self.backbone(inputs['bev']), )
        if mode == 'loss':
            return self.bbox_head.loss(feats, data_samples)
        return self.bbox_head(feats)


# ---------------------------------------------------------------------------
# the adapter: all the plugin needs to know about ToyBEVHead
# ---------------------------------------------------------------------------
@HEAD_ADAPTERS.register_module()
class ToyBEVHeadAdapter(BEVHeadAdapter):
    head_class = ToyBEVHead
    # ToyDetector's whole training loss is its bbox_head's loss
    detectors = dict(ToyDetector='bbox_head')
    # forward() returns ([cls per level], [reg per level]), batch first
    terms = ('cls', 'bbox')
    # inherited: the classification loss is head.loss_cls with
    # head.num_classes classes; object features are the BEV head input at
    # the box centre over the model's (or the hook's) point_cloud_range


# ---------------------------------------------------------------------------
def make_batch(B=3, seed=0, likelihoods=None):
    g = np.random.default_rng(seed)
    samples = []
    for b in range(B):
        n = 2 + b % 2
        xy = np.stack([g.uniform(0.5, 15.5, n), g.uniform(-7.5, 7.5, n)], 1)
        boxes = np.concatenate([xy, np.full((n, 1), -1.0),
                                np.ones((n, 3)), np.zeros((n, 1))], 1)
        meta = dict(sample_idx=b)
        if likelihoods is not None:
            meta['equity_likelihood'] = float(likelihoods[b])
        ds = Det3DDataSample(metainfo=meta)
        gt = InstanceData()
        gt.bboxes_3d = LiDARInstance3DBoxes(torch.tensor(boxes).float())
        gt.labels_3d = torch.tensor([k % 3 for k in range(n)])
        ds.gt_instances_3d = gt
        samples.append(ds)
    bev = torch.tensor(g.normal(size=(B, 4, 8, 8)), dtype=torch.float32)
    return dict(inputs=dict(bev=bev), data_samples=samples)


def total(losses):
    return sum(losses.values())


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_equity_weighting_is_exact_on_the_user_head():
    from mmdet3d_equity.engine.hooks import EquityHook
    torch.manual_seed(0)
    model = ToyDetector().train()
    p = [0.0, 0.9, 0.4]
    data = make_batch(likelihoods=p)
    state = copy.deepcopy(model.state_dict())
    hook = EquityHook(loss=dict(type='GeneralizedFocalLoss', eta=0.5,
                                gamma=2.0))
    hook.install(model)
    assert type(hook.weighting.adapter).__name__ == 'ToyBEVHeadAdapter'
    model.zero_grad()
    total(model(**data, mode='loss')).backward()
    g_hook = grads(model)
    hook.remove()
    # reference: sum_b w_b * loss with the other samples' outputs detached
    model.load_state_dict(state)
    model.zero_grad()
    ref = 0
    for b in range(3):
        def detach_others(m, a, out, b=b):
            keep = torch.arange(3) == b
            return tuple([torch.where(keep.view(-1, 1, 1, 1), t, t.detach())
                          for t in lv] for lv in out)
        h = model.bbox_head.register_forward_hook(detach_others)
        ref = ref + equity_weight(p[b], 0.5, 2.0) * total(
            model(**data, mode='loss'))
        h.remove()
    ref.backward()
    g_ref = grads(model)
    scale = max(g.abs().max().item() for g in g_ref.values())
    for k in g_ref:
        torch.testing.assert_close(g_hook[k], g_ref[k], rtol=1e-5,
                                   atol=1e-6 * scale, msg=k)
    # the weights matter (this test can fail)
    model.load_state_dict(state)
    model.zero_grad()
    total(model(**data, mode='loss')).backward()
    assert any(not torch.allclose(g_hook[k], p_.grad) for k, p_ in
               model.named_parameters())


def test_a_subclass_without_its_own_adapter_is_not_weighted():
    from mmdet3d_equity.engine.hooks import EquityHook

    class MyVariant(ToyBEVHead):
        pass

    model = ToyDetector()
    model.bbox_head = MyVariant()
    with pytest.raises(TypeError, match='subclasses are refused'):
        EquityHook().install(model)


def test_ssb_works_on_the_user_head():
    from mmdet3d.registry import HOOKS
    from mmengine.logging import MessageHub

    from mmdet3d_equity.models.losses import SemanticScaleBalancedLoss
    from mmdet3d_equity.semantic_scale.measures import class_scales
    torch.manual_seed(0)
    model = ToyDetector().train()
    stock_loss = model.bbox_head.loss_cls
    hook = HOOKS.build(dict(type='SemanticScaleBalanceHook', warmup_iters=1,
                            interval=1, capacity=50, point_cloud_range=PCR,
                            sampling='nearest'))

    class Dataset:
        metainfo = dict(classes=['a', 'b', 'c'])

        def __len__(self):
            return 10

    class Loader(list):  # 2 iterations per epoch
        dataset = Dataset()

    runner = SimpleNamespace(model=model, iter=0, max_iters=10,
                             train_dataloader=Loader(range(2)),
                             message_hub=MessageHub.get_instance('toy_ssb'))
    hook.before_train(runner)
    assert isinstance(model.bbox_head.loss_cls, SemanticScaleBalancedLoss)
    assert hook.sampler.describe().startswith('ToyBEVHead: head input')
    data = make_batch(seed=1)
    model(**data, mode='loss')  # iteration 0: warm-up, features captured
    n_obj = sum(len(ds.gt_instances_3d) for ds in data['data_samples'])
    assert hook.store.counts().sum() == n_obj
    # the captured feature of an object is the head input at its cell
    feats = model.backbone(data['inputs']['bev'])
    ds0 = data['data_samples'][0]
    x, y = ds0.gt_instances_3d.bboxes_3d.tensor[0, :2].tolist()
    cell = feats[0, :, int((y + 8) / 2), int(x / 2)]
    lab0 = int(ds0.gt_instances_3d.labels_3d[0])
    stored = hook.store.features(lab0)
    assert any(torch.allclose(f, cell.detach(), atol=1e-6) for f in stored)
    hook.after_train_iter(runner, 0)  # warm-up over: weights updated
    w = hook.loss.class_weights.clone()
    ref = class_scales([hook.store.features(c) for c in range(3)])
    np.testing.assert_allclose(w.numpy(), ref['weight'], rtol=1e-5)
    assert not torch.allclose(w, torch.ones(3))
    # the classification loss is now the class-weighted stock loss
    with torch.no_grad():
        got = model(**data, mode='loss')['loss_cls']
        (cls,), _ = model.bbox_head((model.backbone(data['inputs']['bev']),))
        labels, _ = model.bbox_head.targets(data['data_samples'], 8, 8)
        num_pos = int((labels != 3).sum())
        want = stock_loss(cls.permute(0, 2, 3, 1).reshape(-1, 3),
                          labels.reshape(-1), w[None, :].expand(64 * 3, 3),
                          avg_factor=num_pos)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    hook.after_train(runner)
    assert model.bbox_head.loss_cls is stock_loss
    assert not model._forward_pre_hooks
    assert not model.bbox_head._forward_pre_hooks
