"""EquityHook on a real (tiny) PointPillars detector: exact gradients through
the full detector, all-ones == stock step, logging, refusal of unsupported
detectors/heads, nothing left behind after removal."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity import equity_weight
from mmdet3d_equity.engine.hooks.equity_hook import EquityHook

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CFG = osp.join(REPO, 'configs', 'tiny',
                    'pointpillars_tiny-kitti-3class.py')


def build_tiny_detector(seed=0, freeze_bn=False):
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(TINY_CFG)
    # coarser pillars (64 x 64 BEV grid) keep these CPU tests fast
    vs = [0.64, 0.64, 4]
    cfg.model.data_preprocessor.voxel_layer.voxel_size = vs
    cfg.model.voxel_encoder.voxel_size = vs
    cfg.model.middle_encoder.output_shape = [64, 64]
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    if freeze_bn:
        set_bn_eval(model)
    return model


def set_bn_eval(model):
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


GT = [[10.0, 2.0, -1.78, 3.9, 1.6, 1.56, 0.1, 2],
      [20.0, -5.0, -0.6, 0.8, 0.6, 1.73, 0.0, 0],
      [15.0, 8.0, -0.6, 1.76, 0.6, 1.73, 1.5, 1]]


def make_batch(B, seed=0, likelihoods=None, same_gt=True):
    """Random points around fixed GT boxes (same boxes for every sample, so
    per-rank normalisers split evenly under DDP)."""
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
    from mmengine.structures import InstanceData
    gen = np.random.default_rng(seed)
    points, samples = [], []
    for b in range(B):
        pts = np.concatenate([
            gen.uniform([0, -20, -3, 0], [40.9, 20.4, 1, 1], (600, 4)),
        ] + [
            np.concatenate([
                gen.normal(g[:3], [g[3] / 4, g[4] / 4, 0.3], (60, 3)) +
                [0, 0, g[5] / 2],
                gen.uniform(0, 1, (60, 1))
            ], 1) for g in GT
        ])
        points.append(torch.tensor(pts, dtype=torch.float32))
        boxes = np.array(GT, dtype=np.float32)
        if not same_gt:
            boxes[:, :2] += gen.uniform(-1, 1, (len(GT), 2))
        meta = dict(box_type_3d=LiDARInstance3DBoxes, sample_idx=b)
        if likelihoods is not None:
            meta.update(equity_likelihood=float(likelihoods[b]))
        ds = Det3DDataSample(metainfo=meta)
        gt = InstanceData()
        gt.bboxes_3d = LiDARInstance3DBoxes(torch.tensor(boxes[:, :7]))
        gt.labels_3d = torch.tensor(boxes[:, 7]).long()
        ds.gt_instances_3d = gt
        samples.append(ds)
    return dict(inputs=dict(points=points), data_samples=samples)


def detach_others(obj, b):
    if torch.is_tensor(obj):
        mask = torch.zeros(obj.shape[0], dtype=torch.bool)
        mask[b] = True
        return torch.where(mask.view((-1, ) + (1, ) * (obj.dim() - 1)), obj,
                           obj.detach())
    if isinstance(obj, (list, tuple)):
        return type(obj)(detach_others(v, b) for v in obj)
    return obj


def loss_sum(losses):
    from mmengine.model import BaseModel
    total, _ = BaseModel.parse_losses(None, losses)
    return total


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()
            if p.grad is not None}


def test_detector_gradients_match_hand_weighted_reference():
    model = build_tiny_detector()
    p = [0.0, 0.9, 0.4]
    data = model.data_preprocessor(make_batch(3, likelihoods=p,
                                              same_gt=False), True)
    w = [equity_weight(x) for x in p]
    state = copy.deepcopy(model.state_dict())
    hook = EquityHook(loss=dict(type='GeneralizedFocalLoss'))
    hook.install(model)
    model.zero_grad()
    # (copies: mmdet3d's target assignment edits the gt boxes in place)
    loss_sum(model(**copy.deepcopy(data), mode='loss')).backward()
    g_hook = grads(model)
    hook.remove()
    # reference: sum_b w_b * loss with the other samples' head outputs
    # detached, same forward (the BN statistics are those of the batch)
    model.load_state_dict(state)
    model.zero_grad()
    ref = 0
    for b in range(3):
        h = model.bbox_head.register_forward_hook(
            lambda m, a, out, b=b: detach_others(out, b))
        ref = ref + w[b] * loss_sum(model(**copy.deepcopy(data),
                                          mode='loss'))
        h.remove()
    ref.backward()
    g_ref = grads(model)
    assert g_hook.keys() == g_ref.keys() and len(g_hook) > 10
    scale = max(g.abs().max().item() for g in g_ref.values())
    for k in g_ref:
        torch.testing.assert_close(g_hook[k], g_ref[k], rtol=1e-4,
                                   atol=1e-5 * scale, msg=k)


def _one_step(model, data, hook=None):
    from mmengine.optim import OptimWrapper
    if hook is not None:
        hook.install(model)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01,
                                         momentum=0.9))
    log = model.train_step(copy.deepcopy(data), optim)
    if hook is not None:
        hook.remove()
    return log


def test_all_ones_weights_reproduce_the_stock_step():
    data = make_batch(2, likelihoods=[0.0, 0.0])  # W(0) == 1 exactly
    m1 = build_tiny_detector(seed=3)
    m2 = build_tiny_detector(seed=3)
    log1 = _one_step(m1, data, EquityHook())
    log2 = _one_step(m2, data)
    for (n, a), (_, b) in zip(m1.state_dict().items(),
                              m2.state_dict().items()):
        assert torch.equal(a, b), n
    assert log1['loss'] == log2['loss']
    # and unequal weights do change the step (the check can fail)
    m3 = build_tiny_detector(seed=3)
    _one_step(m3, make_batch(2, likelihoods=[0.0, 1.0]), EquityHook())
    assert any(not torch.equal(a, b) for a, b in zip(
        m1.state_dict().values(), m3.state_dict().values()))


def test_removed_hook_leaves_model_unchanged_and_predict_untouched():
    model = build_tiny_detector()
    keys = list(model.state_dict())
    hook = EquityHook()
    hook.install(model)
    assert model.bbox_head._forward_hooks and model._forward_pre_hooks
    # mode='tensor' in training: nothing weighted, no likelihood needed
    data = model.data_preprocessor(make_batch(2), False)
    model(data['inputs'], data['data_samples'], mode='tensor')
    assert hook.weighting.calls == 0
    hook.remove()
    assert not model.bbox_head._forward_hooks
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert list(model.state_dict()) == keys


def test_missing_likelihood_is_an_error_and_weights_come_from_the_hook():
    model = build_tiny_detector()
    hook = EquityHook()
    hook.install(model)
    data = model.data_preprocessor(make_batch(2), True)
    with pytest.raises(KeyError, match='EquityDataset'):
        model(**data, mode='loss')
    hook.remove()
    # the batch carries p only; eta/gamma are the hook's loss's alone
    hook = EquityHook(loss=dict(type='GeneralizedFocalLoss', eta=0.3,
                                gamma=2.0))
    hook.install(model)
    data = model.data_preprocessor(make_batch(2, likelihoods=[0.2, 0.5]),
                                   True)
    model(**data, mode='loss')
    torch.testing.assert_close(
        hook._batch_weights,
        torch.tensor([equity_weight(p, 0.3, 2.0) for p in (0.2, 0.5)],
                     dtype=torch.float64), rtol=1e-15, atol=0)
    hook.remove()


def test_bad_loss_configs_are_refused():
    for kw, message in [
            (dict(eta=-1),
             'GeneralizedFocalLoss: eta must be a finite number >= 0, got -1'),
            (dict(gamma=float('nan')), 'GeneralizedFocalLoss: gamma must be '
             'a finite number >= 0, got nan'),
            (dict(normalisation='batch'), 'GeneralizedFocalLoss.normalisation'
             " must be one of ('none', 'dataset'), got 'batch'"),
            (dict(terms='cls'), "GeneralizedFocalLoss.terms must be 'all' or "
             "a list of term names, got 'cls'")]:
        with pytest.raises(ValueError) as exc:
            EquityHook(loss=dict(type='GeneralizedFocalLoss', **kw))
        assert str(exc.value) == message
    with pytest.raises(TypeError) as exc:
        EquityHook(loss=dict(type='mmdet.QualityFocalLoss'))
    assert str(exc.value) == (
        'EquityHook.loss must build a GeneralizedFocalLoss (mmdet3d_equity), '
        "got QualityFocalLoss; note that mmdet's QualityFocalLoss ('GFL' in "
        'mmdet) is unrelated')
    model = build_tiny_detector()
    hook = EquityHook(loss=dict(type='GeneralizedFocalLoss',
                                terms=['heatmap']))
    with pytest.raises(ValueError, match='not loss terms of Anchor3DHead'):
        hook.install(model)


def test_unsupported_detectors_are_refused():
    from mmdet3d.models.detectors import VoxelNet

    from mmdet3d_equity.models.sample_weighting import UnsupportedHeadError

    class MyDetector(VoxelNet):
        pass

    model = build_tiny_detector()
    model.__class__ = MyDetector
    with pytest.raises(UnsupportedHeadError, match='MyDetector'):
        EquityHook().install(model)


def test_dataset_normalisation_and_logging():
    from mmengine.logging import MessageHub
    model = build_tiny_detector()
    hook = EquityHook(loss=dict(type='GeneralizedFocalLoss',
                                normalisation='dataset'))
    with pytest.raises(ValueError, match='needs the train dataset'):
        hook.install(model)
    with pytest.raises(RuntimeError, match='training-set mean'):
        hook.gfl.weights(torch.tensor([0.5]))
    hook.gfl.set_dataset_mean(0.8)
    hook.install(model)
    model(**model.data_preprocessor(make_batch(2, likelihoods=[0.1, 0.7]),
                                    True), mode='loss')
    hook.remove()

    class FakeRunner:
        message_hub = MessageHub.get_instance('equity_test')

    runner = FakeRunner()
    hook.after_train_iter(runner, 0)
    w = np.array([equity_weight(0.1), equity_weight(0.7)]) / 0.8
    scal = runner.message_hub.log_scalars
    assert scal['train/equity_weight_mean'].current() == pytest.approx(
        w.mean(), rel=1e-6)
    assert scal['train/equity_weight_min'].current() == pytest.approx(
        w.min(), rel=1e-6)
    assert scal['train/equity_weight_max'].current() == pytest.approx(
        w.max(), rel=1e-6)
