"""Sharding and gathering of per-sample work across ranks (mmengine.dist).

Each rank handles the samples ``rank, rank + world, ...``; results are
gathered with :func:`mmengine.dist.all_gather_object` (works on gloo/CPU and
NCCL) and re-assembled in sample order on every rank.
"""
from typing import List, Tuple

import numpy as np


def dist_info() -> Tuple[int, int]:
    from mmengine.dist import get_dist_info
    return get_dist_info()


def shard_indices(n: int, rank: int, world_size: int) -> List[int]:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f'bad rank {rank} / world size {world_size}')
    return list(range(rank, n, world_size))


def gather_rows(local, indices: List[int], n: int,
                error: BaseException = None) -> np.ndarray:
    """Assemble the full (n, ...) array from every rank's rows.

    A rank that failed passes its exception as ``error`` (and ``local=None``)
    instead of raising, so that no rank hangs in the collective; then every
    rank raises the first error (rank 0's message names the failing rank).
    """
    rank, world = dist_info()
    if world == 1:
        if error is not None:
            raise error
        if len(indices) != n:
            raise ValueError('single process must hold all rows')
        out = np.empty((n, ) + local.shape[1:], dtype=local.dtype)
        out[np.asarray(indices, dtype=np.int64)] = local
        return out
    from mmengine.dist import all_gather_object
    parts = all_gather_object((list(indices), local, None if error is None
                               else (type(error), str(error))))
    for r, (_, _, err) in enumerate(parts):
        if err is not None:
            if error is not None:
                raise error
            cls, msg = err
            exc = cls(f'(on rank {r}) {msg}') if isinstance(cls, type) and \
                issubclass(cls, Exception) else RuntimeError(msg)
            raise exc
    shape = next(p[1].shape[1:] for p in parts if len(p[0]))
    out = np.empty((n, ) + shape, dtype=local.dtype)
    seen = np.zeros(n, dtype=bool)
    for idx, rows, _ in parts:
        if len(idx):
            out[np.asarray(idx, dtype=np.int64)] = rows
            seen[np.asarray(idx, dtype=np.int64)] = True
    if not seen.all():
        raise RuntimeError(f'{int((~seen).sum())} samples were embedded by '
                           'no rank')
    return out


def barrier() -> None:
    from mmengine.dist import barrier as _barrier
    _barrier()


def broadcast_object(obj):
    """rank 0's ``obj`` on every rank."""
    rank, world = dist_info()
    if world == 1:
        return obj
    from mmengine.dist import broadcast_object_list
    box = [obj]
    broadcast_object_list(box, src=0)
    return box[0]
