"""SemanticScaleBalancedLoss: exactness, gradients, head traps, config errors."""
import copy

import pytest
import torch

import mmdet3d_equity  # noqa: F401  (registers)
from mmdet3d.registry import MODELS
from mmdet3d_equity.models.losses.ssb_loss import SemanticScaleBalancedLoss

FOCAL = dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
             loss_weight=1.0)


def ssb(inner, n=3):
    return MODELS.build(dict(type='SemanticScaleBalancedLoss', loss=inner,
                             num_classes=n))


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


def test_weights_buffer_in_state_dict_and_restored():
    loss = ssb(FOCAL)
    loss.set_class_weights([0.5, 1.0, 1.5])
    sd = loss.state_dict()
    assert torch.equal(sd['class_weights'], torch.tensor([0.5, 1.0, 1.5]))
    fresh = ssb(FOCAL)
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.class_weights, loss.class_weights)
    # num_classes omitted: restored from the checkpoint size
    lazy = MODELS.build(dict(type='SemanticScaleBalancedLoss', loss=FOCAL))
    lazy.load_state_dict(sd)
    assert lazy.num_classes == 3


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
    # in a head: unknown keys / missing inner loss / class mismatch
    head = _tiny_anchor_head_cfg()
    head['loss_cls'] = dict(type='SemanticScaleBalancedLoss', loss=FOCAL,
                            alpha=2)
    with pytest.raises(ValueError, match='unknown keys'):
        MODELS.build(head)
    head['loss_cls'] = dict(type='SemanticScaleBalancedLoss')
    with pytest.raises(ValueError, match='wrapped loss'):
        MODELS.build(head)
    head['loss_cls'] = dict(type='SemanticScaleBalancedLoss', loss=FOCAL,
                            num_classes=5)
    with pytest.raises(ValueError, match='num_classes=5'):
        MODELS.build(head)


def _tiny_anchor_head_cfg():
    from mmengine.config import Config
    cfg = Config.fromfile('configs/tiny/pointpillars_tiny-kitti-3class.py')
    head = copy.deepcopy(cfg.model.bbox_head)
    head.train_cfg = copy.deepcopy(cfg.model.train_cfg)
    head.test_cfg = copy.deepcopy(cfg.model.test_cfg)
    return head


def _gt(n_per_img=(3, 2)):
    from mmengine.structures import InstanceData

    from mmdet3d.structures import LiDARInstance3DBoxes
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
    ssb_cfg = copy.deepcopy(stock_cfg)
    ssb_cfg['loss_cls'] = dict(type='SemanticScaleBalancedLoss',
                               loss=stock_cfg['loss_cls'])
    torch.manual_seed(0)
    stock = MODELS.build(stock_cfg)
    stock.init_weights()
    torch.manual_seed(0)
    wrapped = MODELS.build(ssb_cfg)
    wrapped.init_weights()
    assert isinstance(wrapped.loss_cls, SemanticScaleBalancedLoss)
    assert wrapped.sampling is False and stock.sampling is False
    assert isinstance(wrapped.bbox_sampler, PseudoSampler)
    assert wrapped.use_sigmoid_cls and wrapped.num_classes == 3
    assert wrapped.loss_cls.num_classes == 3
    assert wrapped.conv_cls.out_channels == stock.conv_cls.out_channels
    wrapped.load_state_dict(stock.state_dict(), strict=False)
    gts = _gt()
    metas = [dict(box_type_3d=None)] * 2
    opts = [torch.optim.SGD(h.parameters(), lr=0.01) for h in (stock,
                                                                wrapped)]
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


def _center_head_cfg(loss_cls):
    voxel = [0.8, 0.8, 8]
    return dict(
        type='CenterHead', in_channels=16,
        tasks=[dict(num_class=1, class_names=['car']),
               dict(num_class=2, class_names=['truck', 'bus'])],
        common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2),
                          rot=(2, 2), vel=(2, 2)),
        share_conv_channel=8,
        bbox_coder=dict(type='CenterPointBBoxCoder',
                        post_center_range=[-30, -30, -10, 30, 30, 10],
                        pc_range=[-25.6, -25.6], max_num=50,
                        score_threshold=0.1, out_size_factor=2,
                        voxel_size=voxel[:2], code_size=9),
        separate_head=dict(type='SeparateHead', init_bias=-2.19,
                           final_kernel=3),
        loss_cls=loss_cls,
        loss_bbox=dict(type='mmdet.L1Loss', reduction='mean',
                       loss_weight=0.25),
        norm_bbox=True,
        train_cfg=dict(grid_size=[64, 64, 1], voxel_size=voxel,
                       out_size_factor=2, dense_reg=1, gaussian_overlap=0.1,
                       max_objs=50, min_radius=2,
                       code_weights=[1.0] * 8 + [0.2, 0.2],
                       point_cloud_range=[-25.6, -25.6, -5, 25.6, 25.6, 3]))


def test_center_head_task_channels_map_to_global_classes():
    from mmengine.structures import InstanceData

    from mmdet3d.structures import LiDARInstance3DBoxes
    gfl = dict(type='mmdet.GaussianFocalLoss', reduction='mean')
    torch.manual_seed(0)
    stock = MODELS.build(_center_head_cfg(gfl))
    torch.manual_seed(0)
    wrapped = MODELS.build(_center_head_cfg(
        dict(type='SemanticScaleBalancedLoss', loss=gfl)))
    assert wrapped.loss_cls.num_classes == 3
    assert wrapped.loss_cls._task_sizes == [1, 2]
    wrapped.load_state_dict(stock.state_dict(), strict=False)
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


def test_fcos3d_head_wraps_focal():
    from mmengine.config import Config
    import os.path as osp

    import mmdet3d
    cfg = Config.fromfile(osp.join(
        osp.dirname(mmdet3d.__file__), '.mim', 'configs', 'fcos3d',
        'fcos3d_r101-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d.py'))
    head = cfg.model.bbox_head.to_dict()
    head.update(stacked_convs=1, dcn_on_last_conv=False)
    head['loss_cls'] = dict(type='SemanticScaleBalancedLoss',
                            loss=head['loss_cls'])
    h = MODELS.build(head)
    assert isinstance(h.loss_cls, SemanticScaleBalancedLoss)
    assert h.loss_cls.kind == 'focal' and h.loss_cls.num_classes == 10
    assert h.cls_out_channels == 10
