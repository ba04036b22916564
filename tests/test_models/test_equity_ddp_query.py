"""2-process gloo DDP with EquityHook on mmdet's DETRHead, whose loss
normalisers are reduced across ranks (``sync_cls_avg_factor=True`` and
mmdet's ``reduce_mean`` of the positives): the DDP gradient equals the
one-process gradient of the same global batch, sum_b w_b * L_b with the
global normalisers. The ranks hold different numbers of ground-truth
objects, so per-rank normalisers would not give this equality."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

LIKELIHOODS = [0.0, 0.8, 0.3, 1.0]


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class DETR(nn.Module):
    """Detector stand-in named like mmdet's DETR: the whole loss is its
    bbox_head's (DETRHead)."""

    def __init__(self):
        super().__init__()
        from _query_helpers import QueryTrunk, detr_head
        torch.manual_seed(11)
        self.trunk = QueryTrunk()
        self.trunk.bn.eval()  # no batch coupling across ranks
        self.bbox_head = detr_head(sync_cls_avg_factor=True)

    def forward(self, inputs, data_samples=None, mode='loss'):
        return self.bbox_head.loss(self.trunk(inputs), data_samples)


def _batch():
    from _query_helpers import Q, samples_2d
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, Q, 8, generator=g)
    samples = samples_2d(4, seed=4)
    for ds, p in zip(samples, LIKELIHOODS):
        ds.set_metainfo(dict(equity_likelihood=p))
    return x, samples


def _grads(model, x, samples):
    from _grad_reference import total

    from mmdet3d_equity.engine.hooks import EquityHook
    hook = EquityHook(loss=dict(type='GeneralizedFocalLoss', eta=0.5,
                                gamma=2.0))
    hook.install(model)
    model.train()
    inner = model.module if hasattr(model, 'module') else model
    inner.trunk.bn.eval()
    total(model(x, samples, mode='loss')).backward()
    hook.remove()
    return {n: p.grad.clone() for n, p in inner.named_parameters()
            if p.grad is not None}


def _worker(rank, world, port, out_dir):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        from torch.nn.parallel import DistributedDataParallel
        x, samples = _batch()
        sl = slice(rank * 2, rank * 2 + 2)
        model = DistributedDataParallel(DETR())
        g = _grads(model, x[sl], samples[sl])
        if rank == 0:
            torch.save(g, os.path.join(out_dir, 'ddp.pth'))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_query_head_equals_single_process(tmp_path):
    x, samples = _batch()
    per_rank = [sum(len(ds.gt_instances) for ds in samples[r:r + 2])
                for r in (0, 2)]
    assert per_rank[0] != per_rank[1]  # the reduction matters
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
             join=True)
    ddp = torch.load(str(tmp_path / 'ddp.pth'), weights_only=False)
    torch.set_num_threads(1)
    one = _grads(DETR(), x, samples)
    assert set(ddp) == set(one) and len(one) > 4
    scale = max(v.abs().max().item() for v in one.values())
    for k, v in one.items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-5, atol=1e-6 * scale,
                                   msg=k)
