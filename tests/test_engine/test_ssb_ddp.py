"""Dynamic SSB under 2-process gloo DDP equals one process with the same
global batch: one warm-up step that fills the feature stores, a class-weight
update (statistics all-reduced), then a step with the new class weights.

Batch-norm statistics are frozen and every sample has the same GT boxes, so
per-sample features do not depend on the batch and each rank's loss
normaliser is half the global one (see test_equity_ddp.py)."""
import copy
import os
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class _Dataset:
    metainfo = dict(classes=['Pedestrian', 'Cyclist', 'Car'])

    def __len__(self):
        return 8


class _Loader(list):
    dataset = _Dataset()


def _two_steps(model, data, distributed):
    from mmdet3d.registry import HOOKS
    from mmengine.logging import MessageHub
    from mmengine.optim import OptimWrapper
    if distributed:
        from mmengine.model import MMDistributedDataParallel
        model = MMDistributedDataParallel(module=model)
    hook = HOOKS.build(dict(type='SemanticScaleBalanceHook', warmup_iters=1,
                            interval=1, capacity=64))
    runner = SimpleNamespace(model=model, iter=0, max_iters=10,
                             train_dataloader=_Loader(range(2)),
                             message_hub=MessageHub.get_instance('ssb_ddp'))
    hook.before_train(runner)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05))
    model.train_step(copy.deepcopy(data), optim)  # warm-up: weights 1
    hook.after_train_iter(runner, 0)  # all-reduced update
    weights = hook.loss.class_weights.clone()
    runner.iter = 1
    model.train_step(copy.deepcopy(data), optim)  # with the class weights
    counts = hook.store.counts()
    hook.after_train(runner)
    return weights, counts


def _worker(rank, world, port, out_dir):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        from test_equity_hook import build_tiny_detector, make_batch

        import mmdet3d_equity  # noqa: F401
        model = build_tiny_detector(seed=5, freeze_bn=True)
        full = make_batch(4, seed=1)
        per = 4 // world
        sl = slice(rank * per, (rank + 1) * per)
        data = dict(inputs=dict(points=full['inputs']['points'][sl]),
                    data_samples=full['data_samples'][sl])
        w, counts = _two_steps(model, data, distributed=True)
        torch.save(dict(state=model.state_dict(), weights=w,
                        counts=torch.as_tensor(counts)),
                   os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ssb_ddp_two_processes_equal_single_process(tmp_path):
    from test_equity_hook import build_tiny_detector, make_batch

    import mmdet3d_equity  # noqa: F401

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
             join=True)
    r0 = torch.load(str(tmp_path / 'rank0.pth'), weights_only=False)
    r1 = torch.load(str(tmp_path / 'rank1.pth'), weights_only=False)
    torch.set_num_threads(1)
    model = build_tiny_detector(seed=5, freeze_bn=True)
    init = copy.deepcopy(model.state_dict())
    w, counts = _two_steps(model, make_batch(4, seed=1), distributed=False)
    assert not torch.allclose(w, torch.ones(3))
    # identical on both ranks, equal to the one-process weights
    assert torch.equal(r0['weights'], r1['weights'])
    torch.testing.assert_close(r0['weights'], w, rtol=1e-6, atol=0)
    # each rank stored its own half of the objects
    assert (r0['counts'] + r1['counts']).tolist() == counts.tolist()
    changed = 0
    for k, v in model.state_dict().items():
        torch.testing.assert_close(r0['state'][k], v, rtol=1e-5, atol=1e-6,
                                   msg=k)
        changed += int(not torch.equal(v, init[k]))
    assert changed > 10
