"""What ``tools/compute_likelihoods.py`` runs, usable from Python:
:func:`run_compute_likelihoods` loads the config the way every tool does
(:func:`~mmdet3d_equity.utils.config.load_config`: ``--cfg-options`` that
would change nothing, e.g. ``data_root=...``, are refused) and checks every
output before anything is written (so a refused run leaves every existing
file as it was), starts the process group under torchrun, logs to
``<stem>.log`` next to the likelihood file and calls
:func:`mmdet3d_equity.scoring.pipeline.compute_likelihoods`.

A run that fails (disk full, a bad sample, Ctrl-C) removes the outputs it
had created, so nothing half-written blocks the rerun; its log stays for
reading, and the log of a run that did not finish (no likelihood file
beside it) is replaced by the next run rather than blocking it. Storage
errors (disk full, read-only, permissions), also those of the log file,
are one :class:`~mmdet3d_equity.utils.errors.OutputError` naming the file
and the fix.
"""
import itertools
import logging
import os
import os.path as osp
import shutil
from typing import Optional

from ..utils.fileio import check_not_directory, storage_error
from ..utils.launch import (
    check_torchrun_env,
    destroy_process_group,
    init_cpu_process_group,
)

_RUNS = itertools.count()


def run_compute_likelihoods(config, out: str, settings=None, *,
                            launcher: str = 'none', log: bool = True,
                            **options) -> Optional[dict]:
    """Score the training split of ``config`` into ``out`` (``.npz``).

    ``settings``: a :class:`~mmdet3d_equity.scoring.settings.
    ScoringSettings` (``options`` replace some of its fields).
    ``launcher='pytorch'``: under torchrun (gloo on CPU, NCCL with
    ``device='cuda...'``); every rank embeds its shard, rank 0 clusters and
    writes. Returns the record on rank 0, None on the other ranks.
    """
    import dataclasses

    from mmengine.config import Config
    from mmengine.dist import get_rank
    from mmengine.logging import MMLogger

    from ..scoring.pipeline import check_scoring_options, compute_likelihoods
    from ..scoring.settings import ScoringSettings
    from ..utils.config import ConfigError, load_config
    if launcher not in ('none', 'pytorch'):
        raise ConfigError(f"launcher must be 'none' or 'pytorch', got "
                          f'{launcher!r}')
    settings = ScoringSettings.create(settings, **options)
    # the config as every tool loads it (--cfg-options checked), before
    # anything is created
    cfg = config if isinstance(config, Config) else load_config(
        config, settings.cfg_options)
    settings = dataclasses.replace(settings, cfg_options=None)
    # every check that needs no data, before the log file is opened: a
    # refused run creates and truncates nothing. The log of a run that did
    # not finish (no likelihood file beside it) does not block a rerun.
    from ..scoring.outputs import output_paths
    for key, path in output_paths(out).items():
        if key != 'figures':  # outputs that are files
            check_not_directory(path, '--out' if key == 'record' else
                                f'{key} output')
    paths = check_scoring_options(out, settings, include_log=False)
    check_torchrun_env(launcher)
    started = False
    if launcher == 'pytorch':
        if settings.device.startswith('cuda'):
            from mmengine.dist import init_dist
            init_dist('pytorch', backend='nccl')
            started = True
        else:
            started = init_cpu_process_group('gloo')
    out_dir = osp.dirname(osp.abspath(out))
    before = set(os.listdir(out_dir)) if osp.isdir(out_dir) else set()
    logger = None
    try:
        try:
            logger = MMLogger.get_instance(
                f'mmdet3d_equity.compute_likelihoods.{next(_RUNS)}',
                logger_name='mmdet3d_equity.scoring',
                log_file=paths['log'] if log and get_rank() == 0 else None,
                log_level='INFO')
        except OSError as e:
            raise storage_error(paths['log'], e, 'log file') or e
        for h in logger.handlers:
            if isinstance(h, logging.FileHandler):
                _raise_storage_errors(h)
        return compute_likelihoods(cfg, out, settings, logger=logger)
    except BaseException as e:
        if get_rank() == 0:
            _remove_new_outputs(out, out_dir, before, paths['log'],
                                settings.cache_dir_for(out))
        err = storage_error(getattr(e, 'filename', None) or out, e) \
            if isinstance(e, OSError) else None
        if err is None:
            raise
        raise err from e
    finally:
        for h in list(logger.handlers if logger is not None else []):
            if isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
                try:
                    h.close()
                except OSError:
                    pass  # a full disk: the error raised above says so
        if started:
            destroy_process_group()




def _raise_storage_errors(handler: logging.FileHandler) -> None:
    """Make a storage error of the log file (disk full) stop the run as an
    error, instead of logging's printed traceback for every later line."""
    default = handler.handleError

    def handle_error(record):
        import sys
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) and storage_error(
                handler.baseFilename, exc) is not None:
            raise storage_error(handler.baseFilename, exc, 'log file')
        default(record)

    handler.handleError = handle_error


def _remove_new_outputs(out: str, out_dir: str, before: set, log_path: str,
                        cache_dir: Optional[str]) -> None:
    """After a failed run: remove what it created next to ``out`` (the
    outputs named after its stem: the record, CSV, summary, figures, scorer
    and split files), so the rerun is not blocked by half a result; the log
    and the embedding cache (each entry written whole) stay."""
    if not osp.isdir(out_dir):
        return
    stem = osp.basename(out[:-4] if out.endswith('.npz') else out)
    keep = {osp.basename(log_path)}
    if cache_dir and osp.dirname(osp.abspath(cache_dir)) == out_dir:
        keep.add(osp.basename(osp.abspath(cache_dir)))
    for name in set(os.listdir(out_dir)) - before - keep:
        if not name.startswith(stem):
            continue
        path = osp.join(out_dir, name)
        try:
            if osp.isdir(path) and not osp.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except OSError:
            pass  # best effort: the error being raised says more
