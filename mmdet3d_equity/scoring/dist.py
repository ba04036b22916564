"""Sharding and gathering of per-sample work across ranks (mmengine.dist).

Each rank handles the samples ``rank, rank + world, ...``; results are
gathered with :func:`mmengine.dist.all_gather_object` (works on gloo/CPU and
NCCL) and re-assembled in sample order on every rank.
"""
from typing import List, Optional, Tuple

import numpy as np


def dist_info() -> Tuple[int, int]:
    from mmengine.dist import get_dist_info
    return get_dist_info()


def shard_indices(n: int, rank: int, world_size: int) -> List[int]:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f'bad rank {rank} / world size {world_size}')
    return list(range(rank, n, world_size))


def _rebuild(cls: type, msg: str, rank: int) -> BaseException:
    """The error of another rank, as its own class where it can be built
    from a message (else RuntimeError), naming the rank."""
    text = f'(on rank {rank}) {msg}'
    try:
        return cls(text)
    except Exception:
        return RuntimeError(f'{cls.__name__} {text}')


def gather_rows(local: Optional[np.ndarray], indices: List[int], n: int,
                error: Optional[BaseException] = None) -> np.ndarray:
    """Assemble the full (n, ...) array from every rank's rows (this rank's
    ``local`` rows belong to samples ``indices`` of
    :func:`shard_indices`).

    A rank that failed passes its exception as ``error`` (and
    ``local=None``) instead of raising, so that no rank hangs in the
    collective; then every rank raises: its own error, or the first other
    rank's error naming that rank.
    """
    rank, world = dist_info()
    if world == 1:  # one shard: indices == range(n), already in order
        if error is not None:
            raise error
        return local
    from mmengine.dist import all_gather_object
    parts = all_gather_object((list(indices), local, None if error is None
                               else (type(error), str(error))))
    if error is not None:
        raise error
    for r, (_, _, err) in enumerate(parts):
        if err is not None:
            raise _rebuild(err[0], err[1], r)
    shape = next(p[1].shape[1:] for p in parts if len(p[0]))
    out = np.empty((n, ) + shape, dtype=local.dtype)
    for idx, rows, _ in parts:
        if len(idx):
            out[np.asarray(idx, dtype=np.int64)] = rows
    return out
