"""SemanticScaleBalanceHook: installation on the built model, capture in the
normal forward, warm-up, updates, resume, removal after training, DDP
(2-process gloo) agreement, config errors."""
import os
import socket
import tempfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch

# Heavy imports stay inside the tests: the 2-process test spawns workers that
# import this module, and they only need torch + the store.


def _light_import_store():
    """Import the store without running mmdet3d_equity/__init__ (which
    imports mmdet3d): a stub parent package pointing at the source tree."""
    import importlib
    import sys
    import types
    if 'mmdet3d_equity' not in sys.modules:
        root = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        stub = types.ModuleType('mmdet3d_equity')
        stub.__path__ = [os.path.join(root, 'mmdet3d_equity')]
        sys.modules['mmdet3d_equity'] = stub
    return importlib.import_module(
        'mmdet3d_equity.semantic_scale.store').ClassFeatureStore


def _heavy():
    global Config, MessageHub, init_default_scope, InstanceData, HOOKS
    global MODELS, Det3DDataSample, LiDARInstance3DBoxes, class_scales
    global ClassFeatureStore
    from mmdet3d.registry import HOOKS, MODELS
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
    from mmengine.config import Config
    from mmengine.logging import MessageHub
    from mmengine.registry import init_default_scope
    from mmengine.structures import InstanceData

    import mmdet3d_equity  # noqa: F401
    from mmdet3d_equity.semantic_scale.measures import class_scales
    from mmdet3d_equity.semantic_scale.store import ClassFeatureStore


@pytest.fixture(scope="module", autouse=True)
def _imports():
    _heavy()


TINY_SSB = 'configs/tiny/pointpillars_tiny-kitti-3class_ssb.py'


class _Loader(list):
    def __init__(self, n, dataset):
        super().__init__(range(n))
        self.dataset = dataset


class _Dataset:
    metainfo = dict(classes=['Pedestrian', 'Cyclist', 'Car'])

    def __len__(self):
        return 10


def _runner(model, iters_per_epoch=3, max_iters=30):
    return SimpleNamespace(
        model=model, iter=0, max_iters=max_iters,
        train_dataloader=_Loader(iters_per_epoch, _Dataset()),
        message_hub=MessageHub.get_instance('ssb_test'))


@pytest.fixture(scope='module')
def ssb_model():
    init_default_scope('mmdet3d')
    cfg = Config.fromfile(TINY_SSB)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    return model


def _batch(seed, n_obj=(4, 3)):
    g = torch.Generator().manual_seed(seed)
    points, samples = [], []
    sizes = torch.tensor([[0.8, 0.6, 1.73], [1.76, 0.6, 1.73],
                          [3.9, 1.6, 1.56]])
    for n in n_obj:
        labels = torch.randint(0, 3, (n, ), generator=g)
        xy = torch.rand(n, 2, generator=g) * 30 + torch.tensor([5., -15.])
        boxes = torch.cat([xy, torch.full((n, 1), -1.5), sizes[labels],
                           torch.zeros(n, 1)], 1)
        pts = torch.rand(2000, 4, generator=g) * torch.tensor(
            [40., 40., 3., 1.]) + torch.tensor([0., -20., -2.5, 0.])
        inst = InstanceData()
        inst.bboxes_3d = LiDARInstance3DBoxes(boxes)
        inst.labels_3d = labels
        ds = Det3DDataSample()
        ds.gt_instances_3d = inst
        ds.set_metainfo(dict(box_type_3d=LiDARInstance3DBoxes))
        points.append(pts)
        samples.append(ds)
    return dict(inputs=dict(points=points), data_samples=samples)


def _train_forward(model, batch):
    data = model.data_preprocessor(batch, True)
    return model(**data, mode='loss')


def test_hook_captures_in_forward_warms_up_and_updates(ssb_model):
    from mmdet3d_equity.models.losses import SemanticScaleBalancedLoss
    model = ssb_model
    stock_loss = model.bbox_head.loss_cls
    stock_keys = list(model.state_dict())
    hook = HOOKS.build(dict(type='SemanticScaleBalanceHook', warmup_iters=2,
                            interval=1, capacity=50))
    runner = _runner(model)
    hook.before_run(runner)  # nothing happens before training
    assert model.bbox_head.loss_cls is stock_loss
    hook.before_train(runner)
    loss = model.bbox_head.loss_cls
    assert isinstance(loss, SemanticScaleBalancedLoss)
    assert loss is hook.loss and loss.loss is stock_loss
    assert list(model.state_dict()) == stock_keys  # plain mmdet3d keys
    calls = []
    h = model.bbox_head.register_forward_pre_hook(
        lambda m, i: calls.append(1))
    try:
        for it in range(2):
            runner.iter = it
            losses = _train_forward(model, _batch(it))
            assert torch.isfinite(sum(v.sum() if torch.is_tensor(v) else
                                      sum(v) for v in losses.values()))
            hook.after_train_iter(runner, it)
            if it == 0:  # warm-up: plain loss
                assert torch.equal(loss.class_weights, torch.ones(3))
                assert hook.store.counts().sum() == 7
    finally:
        h.remove()
    assert len(calls) == 2  # one head forward per iteration: no 2nd pass
    # after the warm-up (2 iterations) the weights were updated
    w = loss.class_weights
    assert not torch.equal(w, torch.ones(3))
    assert w.mean().item() == pytest.approx(1.0, rel=1e-6)
    # they equal the measures on the stored features
    ref = class_scales([hook.store.features(c) for c in range(3)])
    assert np.allclose(w.numpy(), ref['weight'], rtol=1e-5)
    # logged to the message hub (-> LoggerHook -> TensorBoard)
    assert 'train/ssb/weight_Car' in runner.message_hub.log_scalars
    # not captured in predict / eval mode
    before = hook.store.counts().sum()
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(_batch(5), False)
        model(**data, mode='predict')
    model.train()
    assert hook.store.counts().sum() == before
    # resume: save hook + model state, restore into fresh objects
    ckpt = dict(state_dict={k: v.clone() for k, v in
                            model.state_dict().items()})
    hook.before_save_checkpoint(runner, ckpt)
    assert torch.equal(ckpt['semantic_scale_balance']['class_weights'], w)
    hook.after_train(runner)
    # after training: every torch hook removed, the stock loss back
    assert model.bbox_head.loss_cls is stock_loss
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert not model.bbox_head._forward_pre_hooks
    assert not model.bbox_head._forward_hooks
    cfg = Config.fromfile(TINY_SSB)
    model2 = MODELS.build(cfg.model)
    model2.load_state_dict(ckpt['state_dict'], strict=True)
    hook2 = HOOKS.build(dict(type='SemanticScaleBalanceHook', warmup_iters=2,
                             interval=1, capacity=50))
    runner2 = _runner(model2)
    runner2.iter = 2
    hook2.after_load_checkpoint(runner2, ckpt)  # (resume, before training)
    hook2.before_train(runner2)  # past warm-up: weights restored
    assert torch.equal(model2.bbox_head.loss_cls.class_weights, w)
    for c in range(3):
        assert torch.equal(hook2.store.features(c), hook.store.features(c))
    res = hook2.update(runner2)
    assert np.allclose(res['weight'], w.numpy(), rtol=1e-6)
    hook2.after_train(runner2)
    # a resume that is still in the warm-up starts from weights 1
    hook3 = HOOKS.build(dict(type='SemanticScaleBalanceHook', warmup_iters=5,
                             interval=1, capacity=50))
    runner3 = _runner(model2)
    runner3.iter = 2
    hook3.after_load_checkpoint(runner3, ckpt)
    hook3.before_train(runner3)
    assert torch.equal(hook3.loss.class_weights, torch.ones(3))
    hook3.after_train(runner3)


def test_store_fifo_and_capacity_repack():
    st = ClassFeatureStore(2, capacity=3)
    f = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 2)
    st.push(f[:2], torch.tensor([0, 0]))
    st.push(f[2:5], torch.tensor([0, 0, 1]))
    assert st.counts().tolist() == [3, 1]
    assert sorted(st.features(0)[:, 0].tolist()) == [1, 2, 3]  # 0 evicted
    st.push(f[5:9], torch.tensor([0, 0, 0, 0]))  # more than capacity
    assert sorted(st.features(0)[:, 0].tolist()) == [6, 7, 8]
    small = ClassFeatureStore(2, capacity=2)
    small.load_state_dict(st.state_dict())
    assert sorted(small.features(0)[:, 0].tolist()) == [7, 8]  # newest kept
    with pytest.raises(ValueError, match='labels'):
        st.push(f[:1], torch.tensor([2]))
    with pytest.raises(ValueError, match='capacity'):
        ClassFeatureStore(2, capacity=1)
    # empty store: weights 1, never NaN
    res = ClassFeatureStore(3, 4).compute()
    assert np.allclose(res['weight'], 1.0)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    import torch.distributed as tdist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    tdist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        Store = _light_import_store()
        g = torch.Generator().manual_seed(100 + rank)  # different data
        st = Store(3, capacity=64)
        n = [40, 7, 1] if rank == 0 else [25, 12, 0]
        for c in range(3):
            st.push(torch.randn(n[c], 6, generator=g) * (c + 1) + rank,
                    torch.full((n[c], ), c))
        res = st.compute(alpha=2.0)
        torch.save(dict(weight=torch.from_numpy(res['weight']),
                        feats=[st.features(c) for c in range(3)]),
                   os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_gives_identical_weights():
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_ddp_worker, args=(2, _free_port(), d), nprocs=2,
                 join=True)
        r0 = torch.load(os.path.join(d, 'rank0.pt'))
        r1 = torch.load(os.path.join(d, 'rank1.pt'))
    assert torch.equal(r0['weight'], r1['weight'])
    # and they equal the single-process result on the union of the data
    union = [torch.cat([r0['feats'][c], r1['feats'][c]]) for c in range(3)]
    ref = class_scales(union, alpha=2.0)
    assert np.allclose(r0['weight'].numpy(), ref['weight'], rtol=1e-9)
    assert not np.allclose(ref['weight'], 1.0)


def test_bad_hook_configs(ssb_model):
    bad = [dict(alpha=0.5), dict(sampling='cubic'), dict(min_count=1),
           dict(warmup_epochs=3, warmup_iters=10), dict(interval=0),
           dict(capacity=1), dict(scale_floor=0), dict(warmup_epochs=-1)]
    for kw in bad:
        with pytest.raises(ValueError):
            HOOKS.build(dict(type='SemanticScaleBalanceHook', **kw))

    # a detector without a supported head
    class NoHead(torch.nn.Module):
        bbox_head = torch.nn.Linear(2, 2)

    hook = HOOKS.build(dict(type='SemanticScaleBalanceHook'))
    with pytest.raises(TypeError, match='no head adapter is registered'):
        hook.before_train(_runner(NoHead()))


@pytest.mark.parametrize('kw, how', [
    (dict(warmup_epochs=5), 'warmup_epochs=5 x 3 iterations per epoch'),
    (dict(warmup_iters=30), 'warmup_iters=30')])
def test_warmup_not_shorter_than_the_schedule_is_refused(ssb_model, kw, how):
    """SSB that would never switch on is refused before
    training starts, and the model is left untouched."""
    stock_loss = ssb_model.bbox_head.loss_cls
    hook = HOOKS.build(dict(type='SemanticScaleBalanceHook', **kw))
    runner = _runner(ssb_model, iters_per_epoch=3, max_iters=15 if
                     'warmup_epochs' in kw else 30)
    with pytest.raises(ValueError) as e:
        hook.before_train(runner)
    assert f'the warm-up ({15 if "warmup_epochs" in kw else 30} ' \
        f'iterations: {how}) is not shorter than the schedule' in str(e.value)
    assert 'would never be used' in str(e.value)
    assert ssb_model.bbox_head.loss_cls is stock_loss
    assert not ssb_model._forward_pre_hooks
    assert not ssb_model.bbox_head._forward_pre_hooks
    # one iteration longer: accepted
    runner.max_iters += 1
    hook.before_train(runner)
    assert hook.loss is ssb_model.bbox_head.loss_cls
    hook.after_train(runner)
