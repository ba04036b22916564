"""What ``tools/compute_likelihoods.py`` runs, usable from Python:
:func:`run_compute_likelihoods` checks every output before anything is
written (so a refused run leaves every existing file, the log included, as
it was), starts the process group under torchrun, logs to ``<stem>.log``
next to the likelihood file and calls
:func:`mmdet3d_equity.scoring.pipeline.compute_likelihoods`."""
import itertools
import logging
from typing import Optional

from ..utils.launch import (check_torchrun_env, destroy_process_group,
                     init_cpu_process_group)

_RUNS = itertools.count()


def run_compute_likelihoods(config, out: str, *, launcher: str = 'none',
                            overwrite: bool = False, figures: bool = True,
                            cache_dir: Optional[str] = None,
                            use_cache: bool = True, device: str = 'cpu',
                            log: bool = True, **kwargs) -> Optional[dict]:
    """Score the training split of ``config`` into ``out`` (``.npz``).

    ``launcher='pytorch'``: under torchrun (gloo on CPU, NCCL with
    ``device='cuda...'``); every rank embeds its shard, rank 0 clusters and
    writes. ``kwargs``: the options of ``compute_likelihoods``. Returns the
    record on rank 0, None on the other ranks.
    """
    import os.path as osp

    from mmengine.dist import get_rank
    from mmengine.logging import MMLogger

    from ..scoring.pipeline import check_scoring_options, compute_likelihoods
    if launcher not in ('none', 'pytorch'):
        raise ValueError(f"launcher must be 'none' or 'pytorch', got "
                         f'{launcher!r}')
    if cache_dir is None:
        cache_dir = osp.join(osp.dirname(osp.abspath(out)), 'embedding_cache')
    # every check that needs no data, before the log file is opened: a
    # refused run creates and truncates nothing
    paths = check_scoring_options(out, overwrite=overwrite, figures=figures,
                                  cache_dir=cache_dir, use_cache=use_cache,
                                  include_log=log, **kwargs)
    check_torchrun_env(launcher)
    started = False
    if launcher == 'pytorch':
        if device.startswith('cuda'):
            from mmengine.dist import init_dist
            init_dist('pytorch', backend='nccl')
            started = True
        else:
            started = init_cpu_process_group('gloo')
    logger = MMLogger.get_instance(
        f'mmdet3d_equity.compute_likelihoods.{next(_RUNS)}',
        logger_name='mmdet3d_equity.scoring',
        log_file=paths['log'] if log and get_rank() == 0 else None,
        log_level='INFO')
    try:
        return compute_likelihoods(config, out, overwrite=overwrite,
                                   figures=figures, cache_dir=cache_dir,
                                   use_cache=use_cache, device=device,
                                   logger=logger, **kwargs)
    finally:
        for h in list(logger.handlers):
            if isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
                h.close()
        if started:
            destroy_process_group()
