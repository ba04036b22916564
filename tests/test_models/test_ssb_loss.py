"""SemanticScaleBalancedLoss: exactness, gradients, installation on built
heads (the head traps), config errors."""
import copy
import os.path as osp

import pytest
import torch
from _model_cfgs import _center_head_cfg
from mmdet3d.registry import MODELS

import mmdet3d_equity  # noqa: F401  (registers)
from mmdet3d_equity.models.losses.ssb_loss import (
    HeadSSB,
    SemanticScaleBalancedLoss,
)

FOCAL = dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
             loss_weight=1.0)


def ssb(inner, n=3):
    return SemanticScaleBalancedLoss(inner, num_classes=n)


def test_focal_gradient_matches_hand_weighted():
    torch.manual_seed(0)
    loss = ssb(FOCAL)
    w = torch.tensor([0.5, 2.0, 0.5])
    loss.set_class_weights(w)
    pred = torch.randn(40, 3, requires_grad=True)
    label = torch.randint(0, 4, (40, ))  # 3 = background
    lw = torch.rand(40)
    out = loss(pred, label, lw, avg_factor=7)
    g, = torch.autograd.grad(out, pred)
    ref_loss = MODELS.build(FOCAL)
    pred2 = pred.detach().clone().requires_grad_(True)
    ref = ref_loss(pred2, label, lw[:, None] * w[None, :], avg_factor=7)
    g2, = torch.autograd.grad(ref, pred2)
    assert torch.allclose(out, ref, rtol=1e-6)
    assert torch.allclose(g, g2, rtol=1e-5, atol=1e-8)
    # per class: gradient column c is w_c times the unweighted column
    base = MODELS.build(FOCAL)
    pred3 = pred.detach().clone().requires_grad_(True)
    g3, = torch.autograd.grad(base(pred3, label, lw, avg_factor=7), pred3)
    for c in range(3):
        assert torch.allclose(g[:, c], w[c] * g3[:, c], rtol=1e-5, atol=1e-8)


def test_gaussian_focal_and_ce_gradients():
    torch.manual_seed(1)
    w = torch.tensor([3.0, 0.25, 1.5])
    # Gaussian focal on (B, C, H, W) heatmaps: class channel = dim 1
    gfl_cfg = dict(type='mmdet.GaussianFocalLoss', reduction='mean',
                   loss_weight=1.0)
    loss = ssb(gfl_cfg)
    loss.set_class_weights(w)
    pred = torch.rand(2, 3, 5, 6).clamp(1e-4, 1 - 1e-4).requires_grad_(True)
    target = torch.rand(2, 3, 5, 6)
    target[0, 1, 2, 3] = 1
    out = loss(pred, target, avg_factor=4)
    g, = torch.autograd.grad(out, pred)
    base = MODELS.build(gfl_cfg)
    p2 = pred.detach().clone().requires_grad_(True)
    elem = base(p2, target, reduction_override='none')
    ref = (elem * w.view(1, 3, 1, 1)).sum() / (4 + torch.finfo(
        torch.float32).eps)
    g2, = torch.autograd.grad(ref, p2)
    assert torch.allclose(out, ref, rtol=1e-6)
    assert torch.allclose(g, g2, rtol=1e-5, atol=1e-8)
    # softmax CE: sample of class c scaled by w_c, background (3) by 1
    ce_cfg = dict(type='mmdet.CrossEntropyLoss', use_sigmoid=False,
                  loss_weight=2.0)
    loss = ssb(ce_cfg)
    loss.set_class_weights(w)
    pred = torch.randn(30, 4, requires_grad=True)
    label = torch.randint(0, 4, (30, ))
    out = loss(pred, label, avg_factor=11)
    g, = torch.autograd.grad(out, pred)
    p2 = pred.detach().clone().requires_grad_(True)
    sw = torch.cat([w, torch.ones(1)])[label]
    ref = MODELS.build(ce_cfg)(p2, label, sw, avg_factor=11)
    g2, = torch.autograd.grad(ref, p2)
    assert torch.allclose(out, ref, rtol=1e-6)
    assert torch.allclose(g, g2, rtol=1e-5, atol=1e-8)
    # sigmoid CE: per channel
    bce_cfg = dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True)
    loss = ssb(bce_cfg)
    loss.set_class_weights(w)
    pred = torch.randn(30, 3, requires_grad=True)
    label = torch.randint(0, 4, (30, ))
    out = loss(pred, label)
    g, = torch.autograd.grad(out, pred)
    p2 = pred.detach().clone().requires_grad_(True)
    elem = MODELS.build(bce_cfg)(p2, label, reduction_override='none')
    ref = (elem * w).mean()
    g2, = torch.autograd.grad(ref, p2)
    assert torch.allclose(g, g2, rtol=1e-5, atol=1e-8)


def test_weights_one_is_exactly_the_wrapped_loss():
    torch.manual_seed(2)
    loss = ssb(FOCAL)
    base = MODELS.build(FOCAL)
    pred = torch.randn(50, 3)
    label = torch.randint(0, 4, (50, ))
    assert torch.equal(loss(pred, label, avg_factor=5.0),
                       base(pred, label, avg_factor=5.0))


def test_weights_are_not_in_the_state_dict():
    """The class weights are a non-persistent buffer: an SSB model's state
    dict is the stock one (checkpoints load strictly into plain mmdet3d);
    the SemanticScaleBalanceHook saves and restores the weights
    (test_ssb_hook)."""
    loss = ssb(FOCAL)
    loss.set_class_weights([0.5, 1.0, 1.5])
    assert 'class_weights' not in loss.state_dict()
    assert torch.equal(loss.class_weights, torch.tensor([0.5, 1.0, 1.5]))
    stock = MODELS.build(_tiny_anchor_head_cfg())
    wrapped = MODELS.build(_tiny_anchor_head_cfg())
    HeadSSB(wrapped).loss.set_class_weights([0.5, 1.0, 1.5])
    assert list(wrapped.state_dict()) == list(stock.state_dict())
    stock.load_state_dict(wrapped.state_dict(), strict=True)
    # num_classes omitted: set on first use (CenterHead tasks)
    lazy = SemanticScaleBalancedLoss(FOCAL)
    lazy.begin_tasks([1, 2])
    assert lazy.num_classes == 3
    assert torch.equal(lazy.class_weights, torch.ones(3))


def test_bad_configs_and_weights():
    with pytest.raises(ValueError, match='unknown inner loss'):
        ssb(dict(type='mmdet.SmoothL1Loss'))
    with pytest.raises(ValueError, match='num_classes'):
        ssb(FOCAL, n=0)
    loss = ssb(FOCAL)
    with pytest.raises(ValueError, match='finite'):
        loss.set_class_weights([1.0, float('inf'), 1.0])
    with pytest.raises(ValueError, match='expected 3'):
        loss.set_class_weights([1.0, 1.0])
    loss.set_class_weights([1.0, 2.0, 1.0])
    with pytest.raises(ValueError, match='class channels'):
        loss(torch.randn(4, 5), torch.zeros(4, dtype=torch.long))
    # installed once per head
    head = MODELS.build(_tiny_anchor_head_cfg())
    HeadSSB(head)
    with pytest.raises(RuntimeError, match='already a SemanticScaleBalanced'):
        HeadSSB(head)


SSB_IN_MODEL = ('SemanticScaleBalancedLoss is not configured in the model: '
                'remove loss_cls=')


@pytest.mark.parametrize('where', ['center', 'fcos3d', 'anchor3d_config'])
def test_ssb_in_a_model_config_is_refused(where, tmp_path):
    """SSB is configured once, on its hook: the old head-config form fails
    with the fix instead of building a different head or no SSB."""
    if where == 'center':
        with pytest.raises(ValueError, match=SSB_IN_MODEL):
            MODELS.build(_center_head_cfg(dict(
                type='SemanticScaleBalancedLoss',
                loss=dict(type='mmdet.GaussianFocalLoss'))))
    elif where == 'fcos3d':
        head = _fcos3d_head_cfg()
        head['loss_cls'] = dict(type='SemanticScaleBalancedLoss',
                                loss=head['loss_cls'])
        with pytest.raises(ValueError, match=SSB_IN_MODEL):
            MODELS.build(head)
    else:
        # Anchor3DHead fails in its own __init__ before building the loss
        # (it picks a sampler from the loss type name): the config check of
        # the tools names the key first
        from mmdet3d_equity.utils.config import ConfigError, load_config
        cfg = tmp_path / 'old_ssb.py'
        cfg.write_text(
            "_base_ = '{}'\nmodel = dict(bbox_head=dict(loss_cls=dict("
            "_delete_=True, type='SemanticScaleBalancedLoss', "
            "loss={{{{_base_.model.bbox_head.loss_cls}}}})))\n".format(
                osp.abspath(TINY)))
        with pytest.raises(ConfigError) as e:
            load_config(str(cfg))
        assert str(e.value).startswith(
            'model.bbox_head.loss_cls is a SemanticScaleBalancedLoss: SSB '
            'is not configured in the model.')
        assert "type='SemanticScaleBalanceHook'" in str(e.value)


TINY = 'configs/tiny/pointpillars_tiny-kitti-3class.py'


def _fcos3d_head_cfg():
    import mmdet3d
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(
        osp.dirname(mmdet3d.__file__), '.mim', 'configs', 'fcos3d',
        'fcos3d_r101-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d.py'))
    head = cfg.model.bbox_head.to_dict()
    head.update(stacked_convs=1, dcn_on_last_conv=False)
    return head


def _tiny_anchor_head_cfg():
    from mmengine.config import Config
    cfg = Config.fromfile(TINY)
    head = copy.deepcopy(cfg.model.bbox_head)
    head.train_cfg = copy.deepcopy(cfg.model.train_cfg)
    head.test_cfg = copy.deepcopy(cfg.model.test_cfg)
    return head


def _gt(n_per_img=(3, 2)):
    from mmdet3d.structures import LiDARInstance3DBoxes
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(5)
    out = []
    sizes = torch.tensor([[0.8, 0.6, 1.73], [1.76, 0.6, 1.73],
                          [3.9, 1.6, 1.56]])
    for n in n_per_img:
        labels = torch.arange(n) % 3
        xy = torch.rand(n, 2, generator=g) * torch.tensor([30., 30.]) + \
            torch.tensor([5., -15.])
        z = torch.full((n, 1), -1.5)
        boxes = torch.cat([xy, z, sizes[labels], torch.zeros(n, 1)], 1)
        inst = InstanceData()
        inst.bboxes_3d = LiDARInstance3DBoxes(boxes)
        inst.labels_3d = labels
        out.append(inst)
    return out


def test_anchor3d_head_focal_trap_trains_exactly_like_stock():
    """Wrapping FocalLoss must not switch on the sampler (Anchor3DHead decides
    sampling from the loss *type name*), and with weights 1 training is
    identical to the stock head."""
    from mmdet3d.models.task_modules import PseudoSampler
    stock_cfg = _tiny_anchor_head_cfg()
    torch.manual_seed(0)
    stock = MODELS.build(stock_cfg)
    stock.init_weights()
    torch.manual_seed(0)
    wrapped = MODELS.build(copy.deepcopy(stock_cfg))
    wrapped.init_weights()
    installed = HeadSSB(wrapped)
    assert isinstance(wrapped.loss_cls, SemanticScaleBalancedLoss)
    assert wrapped.loss_cls is installed.loss
    assert wrapped.sampling is False and stock.sampling is False
    assert isinstance(wrapped.bbox_sampler, PseudoSampler)
    assert wrapped.use_sigmoid_cls and wrapped.num_classes == 3
    assert wrapped.loss_cls.num_classes == 3
    assert wrapped.conv_cls.out_channels == stock.conv_cls.out_channels
    wrapped.load_state_dict(stock.state_dict(), strict=True)
    gts = _gt()
    metas = [dict(box_type_3d=None)] * 2
    opts = [torch.optim.SGD(h.parameters(), lr=0.01)
            for h in (stock, wrapped)]
    torch.manual_seed(1)
    feats = [torch.randn(2, 192, 32, 32)]
    for _ in range(2):
        losses = []
        for h, opt in zip((stock, wrapped), opts):
            opt.zero_grad()
            out = h(feats)
            ld = h.loss_by_feat(*out, gts, metas)
            total = sum(sum(v) for v in ld.values())
            total.backward()
            opt.step()
            losses.append({k: [t.item() for t in v] for k, v in ld.items()})
        assert losses[0] == losses[1]
    for (n, p), (n2, p2) in zip(stock.named_parameters(),
                                wrapped.named_parameters()):
        assert n == n2 and torch.equal(p, p2), n
    # weights != 1 change only the classification loss, per class
    wrapped.loss_cls.set_class_weights([2.0, 2.0, 2.0])
    with torch.no_grad():
        a = stock.loss_by_feat(*stock(feats), gts, metas)
        b = wrapped.loss_by_feat(*wrapped(feats), gts, metas)
    assert torch.allclose(b['loss_cls'][0], 2 * a['loss_cls'][0], rtol=1e-5)
    assert torch.equal(b['loss_bbox'][0], a['loss_bbox'][0])
    # removal restores the stock loss module
    inner = installed.inner
    installed.remove()
    assert wrapped.loss_cls is inner
    assert not wrapped._forward_pre_hooks




@pytest.mark.slow
def test_center_head_task_channels_map_to_global_classes():
    from mmdet3d.structures import LiDARInstance3DBoxes
    from mmengine.structures import InstanceData
    gfl = dict(type='mmdet.GaussianFocalLoss', reduction='mean')
    torch.manual_seed(0)
    stock = MODELS.build(_center_head_cfg(gfl))
    torch.manual_seed(0)
    wrapped = MODELS.build(_center_head_cfg(gfl))
    installed = HeadSSB(wrapped)
    assert wrapped.loss_cls.num_classes == 3
    assert wrapped.loss_cls._task_sizes == [1, 2]
    wrapped.load_state_dict(stock.state_dict(), strict=True)
    inst = InstanceData()
    inst.bboxes_3d = LiDARInstance3DBoxes(torch.tensor(
        [[1., 2., 0., 4., 2., 1.5, 0.3, 0., 0.],
         [-8., 5., 0., 8., 2.5, 3., 0., 0., 0.],
         [6., -7., 0., 10., 2.8, 3., 1., 0., 0.]]), box_dim=9)
    inst.labels_3d = torch.tensor([0, 1, 2])
    feats = [torch.randn(1, 16, 32, 32)]

    def heat(head):
        with torch.no_grad():
            ld = head.loss_by_feat(head(feats), [inst])
        return [ld['task0.loss_heatmap'], ld['task1.loss_heatmap']]

    a = heat(stock)
    assert [t.item() for t in heat(wrapped)] == [t.item() for t in a]
    wrapped.loss_cls.set_class_weights([1.0, 4.0, 4.0])
    b = heat(wrapped)  # task 1 = global classes 1, 2
    assert torch.equal(b[0], a[0])
    assert torch.allclose(b[1], 4 * a[1], rtol=1e-5)
    wrapped.loss_cls.set_class_weights([3.0, 1.0, 1.0])
    c = heat(wrapped)
    assert torch.allclose(c[0], 3 * a[0], rtol=1e-5)
    assert torch.equal(c[1], a[1])
    # more loss calls than tasks after one forward is an error
    wrapped(feats)
    p = torch.rand(1, 1, 4, 4)
    wrapped.loss_cls(p, p, avg_factor=1)
    wrapped.loss_cls(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4),
                     avg_factor=1)
    with pytest.raises(RuntimeError, match='tasks'):
        wrapped.loss_cls(p, p, avg_factor=1)
    installed.remove()
    assert not wrapped._forward_pre_hooks
    assert type(wrapped.loss_cls).__name__ == 'GaussianFocalLoss'


def test_fcos3d_head_wraps_focal():
    h = MODELS.build(_fcos3d_head_cfg())
    HeadSSB(h)
    assert isinstance(h.loss_cls, SemanticScaleBalancedLoss)
    assert h.loss_cls.kind == 'focal' and h.loss_cls.num_classes == 10
    assert h.cls_out_channels == 10
