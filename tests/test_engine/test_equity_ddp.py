"""2-process gloo DDP (MMDistributedDataParallel) with EquityHook gives the
same parameters after one step as one process with the same global batch;
in the resampling mode the two ranks draw the one-process batches.

Batch-norm statistics are frozen (BN in eval mode) and every sample has the
same GT boxes, so each rank's loss normaliser (Anchor3DHead's num_pos) is
half the global one and DDP's gradient averaging reproduces the global
batch exactly; the per-sample weights differ.
"""
import copy
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

LIKELIHOODS = [0.0, 0.8, 0.3, 1.0]


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _step(model, data, distributed):
    from mmengine.optim import OptimWrapper

    from mmdet3d_equity.engine.hooks.equity_hook import EquityHook
    if distributed:
        from mmengine.model import MMDistributedDataParallel
        model = MMDistributedDataParallel(module=model)
    hook = EquityHook()
    hook.install(model)  # finds the detector under .module
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05))
    log = model.train_step(data, optim)
    weights = hook._batch_weights.clone()
    hook.remove()
    return log, weights


def _worker(rank, world, port, out_dir):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        from test_equity_hook import build_tiny_detector, make_batch
        model = build_tiny_detector(seed=5, freeze_bn=True)
        full = make_batch(4, seed=1, likelihoods=LIKELIHOODS)
        per = 4 // world
        sl = slice(rank * per, (rank + 1) * per)
        data = dict(inputs=dict(points=full['inputs']['points'][sl]),
                    data_samples=full['data_samples'][sl])
        _, w = _step(model, data, distributed=True)
        if rank == 0:
            torch.save(dict(state=model.state_dict(), weights=w),
                       os.path.join(out_dir, 'ddp.pth'))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_equal_single_process(tmp_path):
    from test_equity_hook import build_tiny_detector, make_batch

    from mmdet3d_equity import equity_weight

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
             join=True)
    ddp = torch.load(str(tmp_path / 'ddp.pth'), weights_only=False)

    torch.set_num_threads(1)
    model = build_tiny_detector(seed=5, freeze_bn=True)
    init = copy.deepcopy(model.state_dict())
    _, w = _step(model, make_batch(4, seed=1, likelihoods=LIKELIHOODS),
                 distributed=False)
    torch.testing.assert_close(
        w, torch.tensor([equity_weight(p) for p in LIKELIHOODS],
                        dtype=torch.float64))
    torch.testing.assert_close(ddp['weights'], w[:2])
    changed = 0
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ddp['state'][k], v, rtol=1e-5, atol=1e-6,
                                   msg=k)
        changed += int(not torch.equal(v, init[k]))
    assert changed > 10


# ---------------------------------------------------------------------------
# Resampling mode: the two ranks' k-th batches are the one-process k-th
# batch of the global size
# ---------------------------------------------------------------------------
def _sampler_draws(lik_file, seed=0, epoch=1):
    from _toy_equity import SAMPLER_LOSS, _build, toy_cfg
    from mmdet3d.registry import DATA_SAMPLERS
    ds = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     dataset=toy_cfg()), claim=False)
    sampler = DATA_SAMPLERS.build(
        dict(type='EquityWeightedSampler', loss=SAMPLER_LOSS),
        default_args=dict(dataset=ds, seed=seed))
    sampler.set_epoch(epoch)
    return list(iter(sampler)), len(sampler)


def _sampler_worker(rank, world, port, out_dir, lik_file):
    import json

    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        draws, n = _sampler_draws(lik_file)
        with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(dict(draws=draws, len=n), f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_resampling_two_processes_equal_single_process(tmp_path):
    import json

    from _toy_equity import FRAME_IDS, write_file
    lik = write_file(tmp_path / 'equity_likelihoods.npz', FRAME_IDS)
    mp.spawn(_sampler_worker, args=(2, _free_port(), str(tmp_path), lik),
             nprocs=2, join=True)
    ranks = [json.load(open(tmp_path / f'rank{r}.json')) for r in (0, 1)]
    one, n = _sampler_draws(lik)
    assert n == len(one) == 12
    assert [r['len'] for r in ranks] == [6, 6]
    per_rank = 3  # global batch 6
    for k in range(2):
        got = sorted(ranks[0]['draws'][k * per_rank:(k + 1) * per_rank] +
                     ranks[1]['draws'][k * per_rank:(k + 1) * per_rank])
        assert got == sorted(one[2 * k * per_rank:2 * (k + 1) * per_rank])
    # and the draws are not trivially all indices (weights matter)
    assert len(set(one)) < 12 or sorted(one) != list(range(12))
