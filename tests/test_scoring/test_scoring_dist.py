"""scoring.dist: shards cover every sample once; rows gathered over 2 gloo
processes come back in sample order on every rank; a failing rank makes
every rank raise (no hang), naming the rank."""
import json
import os
import socket

import numpy as np
import pytest
import torch.multiprocessing as mp

from mmdet3d_equity.scoring.dist import gather_rows, shard_indices


class ShardError(ValueError):
    pass


class TwoArgError(Exception):
    def __init__(self, a, b):
        super().__init__(f'{a} {b}')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


#: (n, failing rank, error class) run one after the other in one group
SCENARIOS = [(5, -1, None), (1, -1, None), (5, 1, 'ShardError'),
             (5, 1, 'TwoArgError')]


def _gather(rank, world, n, fail_rank, error_cls):
    mine = shard_indices(n, rank, world)
    local = np.stack([np.full((2, 3), i, np.float32) for i in mine]) \
        if mine else np.zeros((0, 0, 0), np.float32)
    error = None
    if rank == fail_rank:
        error = ShardError('image x.png cannot be read') if \
            error_cls == 'ShardError' else TwoArgError('a', 'b')
        local = None
    try:
        out = gather_rows(local, mine, n, error=error)
        return dict(rows=out[:, 0, 0].tolist(), shape=list(out.shape))
    except Exception as e:
        return dict(error=type(e).__name__, message=str(e))


def _worker(rank, world, port, out_dir):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        res = [_gather(rank, world, *sc) for sc in SCENARIOS]
        with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(res, f)
    finally:
        dist.destroy_process_group()


def test_shards_cover_every_sample_once():
    for n in (0, 1, 5, 8):
        for world in (1, 2, 3):
            got = sorted(i for r in range(world)
                         for i in shard_indices(n, r, world))
            assert got == list(range(n))
    with pytest.raises(ValueError, match='bad rank 2 / world size 2'):
        shard_indices(4, 2, 2)


def test_single_process_returns_its_rows_or_raises():
    rows = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert gather_rows(rows, [0, 1, 2], 3) is rows
    with pytest.raises(ShardError, match='boom'):
        gather_rows(None, [0, 1, 2], 3, error=ShardError('boom'))


@pytest.mark.slow
def test_two_gloo_ranks(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
             join=True)
    r0, r1 = [json.load(open(tmp_path / f'rank{r}.json')) for r in (0, 1)]
    # rows come back in sample order on every rank (also with an idle rank)
    for res in (r0, r1):
        assert res[0] == dict(rows=list(range(5)), shape=[5, 2, 3])
        assert res[1] == dict(rows=[0], shape=[1, 2, 3])
    # a failing rank fails every rank, naming it
    assert r1[2] == dict(error='ShardError',
                         message='image x.png cannot be read')
    assert r0[2] == dict(error='ShardError',
                         message='(on rank 1) image x.png cannot be read')
    assert r1[3] == dict(error='TwoArgError', message='a b')
    assert r0[3] == dict(error='RuntimeError',
                         message='TwoArgError (on rank 1) a b')
