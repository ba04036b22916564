"""Embedding a split: every rank embeds its shard through the embedder's
DataLoader, the rows are gathered, and the result is cached in
``<cache_dir>/emb_<key>.npz``, keyed by the embedder's config, the
cameras, the data root and the split's fingerprint."""
import hashlib
import json
import os.path as osp
from typing import List, Optional

import numpy as np

from ..utils.fileio import atomic_savez, check_output_dir
from .dist import dist_info, gather_rows, shard_indices
from .outputs import get_logger


def _key(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode('utf-8')
    return hashlib.sha256(blob).hexdigest()[:16]


def read_embedding_cache(path: str, split, logger=None
                         ) -> Optional[np.ndarray]:
    """The cached (N, C, D) embeddings of ``split``, or None (with a warning
    naming the file) when the file is unreadable, malformed or holds other
    samples: the caller re-embeds and replaces it."""
    logger = logger or get_logger()
    try:
        with np.load(path, allow_pickle=False) as z:
            ids = [str(s) for s in z['sample_ids']]
            emb = np.asarray(z['embeddings'])
    except Exception as e:  # truncated zip, bad header, missing key, ...
        logger.warning(
            f'embedding cache {path} is unreadable ({type(e).__name__}: '
            f'{e}); re-embedding and replacing it')
        return None
    if emb.dtype != np.float32 or emb.ndim != 3 or \
            emb.shape[0] != len(ids) or not np.isfinite(emb).all():
        logger.warning(
            f'embedding cache {path} is malformed (embeddings '
            f'{emb.dtype} {emb.shape} for {len(ids)} samples, or not '
            'finite); re-embedding and replacing it')
        return None
    if ids != split.ids:
        logger.warning(f'cache {path} holds other samples; re-embedding')
        return None
    logger.info(f'embeddings read from cache {path}')
    return emb


def embed_split(split, embedder, cameras: Optional[List[str]],
                img_prefix: Optional[str] = None, cache_dir=None,
                use_cache: bool = True, logger=None) -> np.ndarray:
    """(N, C, D) float32 embeddings of the split (C = #cameras, 1 for
    embedders without cameras), computed on this rank's shard through the
    embedder's DataLoader and gathered; read from / written to the cache
    when ``use_cache`` (an unreadable cache file is re-embedded and
    replaced, with a warning)."""
    from mmengine.utils import ProgressBar

    from .embedders.loaders import iter_embeddings
    rank, world = dist_info()
    n = len(split)
    key_obj = dict(embedder=embedder.config(), cameras=cameras,
                   img_prefix=img_prefix, data_root=split.data_root,
                   ann_file=split.ann_file, fingerprint=split.fingerprint)
    cache_path = None
    if use_cache and cache_dir:
        cache_path = osp.join(cache_dir, f'emb_{_key(key_obj)}.npz')
        if osp.isfile(cache_path):
            emb = read_embedding_cache(cache_path, split, logger)
            if emb is not None:
                return emb
        if rank == 0:  # before the long work, not after it
            check_output_dir(cache_dir, 'embedding cache')
    mine = shard_indices(n, rank, world)
    data = embedder.split_dataset(split, mine, cameras, img_prefix)
    rows, error = [], None
    bar = ProgressBar(len(mine)) if rank == 0 and len(mine) else None
    try:
        for v in iter_embeddings(embedder, data):
            rows.append(v.astype(np.float32, copy=False))
            if bar is not None:
                for _ in range(len(v)):
                    bar.update()
        if bar is not None:
            print('', flush=True)
        local = np.concatenate(rows) if rows else None
    except Exception as e:  # let the other ranks learn about it, no hang
        error, local = e, None
    if local is None and error is None:
        local = np.zeros((0, 0, 0), np.float32)
    emb = gather_rows(local, mine, n, error=error)
    if cache_path and rank == 0:
        atomic_savez(cache_path, overwrite=True,
                     sample_ids=np.asarray(split.ids), embeddings=emb,
                     key=np.asarray(json.dumps(key_obj, sort_keys=True,
                                               default=str)))
        if logger:
            logger.info(f'embeddings cached in {cache_path}')
    return emb
