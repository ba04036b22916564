"""End to end: dataset config -> embeddings -> clusters -> likelihood file.

:func:`compute_likelihoods` is what ``tools/compute_likelihoods.py`` runs;
its options are one :class:`~.settings.ScoringSettings`. The files it
writes are listed in :mod:`.outputs`; embeddings are cached
(:mod:`.embedding`).
"""
import copy
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import numpy as np

from ..utils.errors import ConfigError, ScoringError
from ..utils.fileio import atomic_write_json
from ..utils.likelihood_file import build_record, save_likelihood_file
from .cameras import CAMERA_AGGREGATIONS, aggregation_record, score_views
from .clustering import check_embeddings, score_embeddings
from .dataset_source import Split
from .dist import dist_info
from .embedding import embed_split
from .outputs import check_outputs, get_logger, summarize, write_csv
from .settings import ScoringSettings
from .split_scoring import check_split_names, write_scorer_outputs

__all__ = ['CAMERA_AGGREGATIONS', 'check_scoring_options',
           'compute_likelihoods', 'score_split']


def score_split(emb: np.ndarray, ids: Sequence[str], cameras,
                camera_aggregation: Optional[str], reducer, clusterer,
                likelihood_def, density_k=10, seed=0, logger=None) -> Dict:
    """Score (N, C, D) embeddings; returns the score dict with the
    aggregation record and the fitted scorer of each view."""
    n, c, d = emb.shape
    for ci in range(c):
        check_embeddings(emb[:, ci], ids)
    agg = aggregation_record(cameras, c, camera_aggregation)
    def score(name, x):
        return score_embeddings(
            x, reducer=copy.deepcopy(reducer),
            clusterer=copy.deepcopy(clusterer), likelihood_def=likelihood_def,
            density_k=density_k, seed=seed, ids=ids, logger=logger)
    res = score_views(emb, agg, score)
    per_cam = res.get('per_camera')
    if per_cam is None:
        return dict(res, aggregation=agg,
                    scorers={'embedding': res['scorer']})
    first = next(iter(per_cam.values()))
    return dict(
        res, aggregation=agg,
        per_camera={cam: dict(likelihood=r['likelihood'],
                              cluster_id=r['cluster_id'],
                              cluster_size=r['cluster_size'])
                    for cam, r in per_cam.items()},
        reduced_by_camera={cam: r['reduced'] for cam, r in per_cam.items()},
        scorers={cam: r['scorer'] for cam, r in per_cam.items()},
        reducer={cam: r['reducer'] for cam, r in per_cam.items()},
        clusterer=dict(first['clusterer'], per_camera={
            cam: r['clusterer'] for cam, r in per_cam.items()}))


def check_scoring_options(out: str, settings: Optional[ScoringSettings] = None,
                          *, include_log: bool = False,
                          **options) -> Dict[str, str]:
    """Every check of :func:`compute_likelihoods` that needs no data, made
    before anything is written (tools/compute_likelihoods.py makes it before
    it opens its log file): the settings (``settings`` with ``options``
    replaced) and the outputs (none exists unless ``overwrite``;
    ``include_log``: the tool's log file counts as an output). Returns the
    output paths."""
    settings = ScoringSettings.create(settings, **options)
    return check_outputs(out, settings, include_log)


def _load(config, cfg_options):
    from mmengine.config import Config

    from ..utils.config import load_config
    if isinstance(config, Config):
        return config, getattr(config, 'filename', None)
    try:
        return load_config(config, cfg_options), config
    except ConfigError as e:
        raise ScoringError(str(e)) from e


def compute_likelihoods(config, out: str,
                        settings: Optional[ScoringSettings] = None, *,
                        logger=None, **options) -> Optional[dict]:
    """Score the training split of ``config`` and write the outputs.

    ``config`` is a path (or an mmengine Config); ``settings`` a
    :class:`ScoringSettings` (default: the defaults), ``options`` replace
    some of its fields (``compute_likelihoods(cfg, out, clusterer=...)``).
    Runs distributed when mmengine.dist is initialised: every rank embeds
    its shard, rank 0 clusters and writes; returns the record on rank 0,
    None elsewhere.

    ``save_scorer``: also write ``<stem>_scorer.npz``, the fitted reduction
    and clustering, to score other splits later (tools/score_split.py).
    ``score_splits`` (e.g. ``('val',)``): score those splits against the
    training fit in this run (``<stem>_<split><ext>`` + ``.csv``).
    ``slice_file``: report (log, ``<stem>_slices.json``, figure) the
    likelihood of each slice's samples (e.g. frame_modes.json).
    """
    s = ScoringSettings.create(settings, **options)
    logger = logger or get_logger()
    rank, world = dist_info()
    paths = check_outputs(out, s)
    cache_dir = s.cache_dir_for(out)
    cfg, config_path = _load(config, s.cfg_options)
    check_split_names(cfg, s.score_splits)
    split = Split(cfg, 'train', img_prefix=s.img_prefix, logger=logger)
    logger.info(f'training split: {split.type}, {len(split)} samples '
                f'(ann_file {split.ann_file}, wrappers {split.wrappers})')
    # the other splits are read before the long embedding of the training
    # split, so a problem with them is found in seconds
    eval_splits = OrderedDict()
    for name in s.score_splits:
        eval_splits[name] = Split(cfg, name, img_prefix=s.img_prefix,
                                  logger=logger)
        logger.info(f'{name} split: {eval_splits[name].type}, '
                    f'{len(eval_splits[name])} samples (ann_file '
                    f'{eval_splits[name].ann_file})')
    emb_model = s.build_embedder(logger)
    cams = emb_model.resolve_cameras(split, s.cameras)
    aggregation = s.camera_aggregation
    if cams is not None:
        if len(cams) > 1 and aggregation is None:
            aggregation = 'likelihood-min'
            logger.info(f'{len(cams)} cameras {cams}: per-camera '
                        'likelihoods combined by min (--camera-aggregation '
                        'likelihood-min)')
        prefix = split.raw_cfg.get('data_prefix') or {}
        for c in cams:
            pre = split.image_prefix(c, s.img_prefix)
            if pre is not None and not s.img_prefix and not prefix.get(c) \
                    and not prefix.get('img'):
                logger.info(f'camera {c}: the config names no image folder; '
                            f'using the standard layout {pre}')
    emb = embed_split(split, emb_model, cams, s.img_prefix, cache_dir,
                      s.use_cache, logger)
    others = OrderedDict()
    for name, esplit in eval_splits.items():  # every rank embeds its shard
        others[name] = (esplit, embed_split(esplit, emb_model, cams,
                                            s.img_prefix, cache_dir,
                                            s.use_cache, logger))
    if rank != 0:
        return None
    logger.info(f'embeddings {emb.shape}; clustering with reducer='
                f'{s.reducer} clusterer={s.clusterer} likelihood='
                f'{s.likelihood_def}')
    res = score_split(emb, split.ids, cams, aggregation,
                      copy.deepcopy(s.reducer), copy.deepcopy(s.clusterer),
                      s.likelihood_def, s.density_k, s.seed, logger)
    emb_cfg = dict(emb_model.config(), dim=int(emb.shape[2]),
                   num_cameras=int(emb.shape[1]), seed=int(s.seed))
    extra = dict(config=config_path, world_size=int(world),
                 eta_gamma_for_csv=dict(eta=float(s.eta),
                                        gamma=float(s.gamma)))
    if 'per_camera' not in res:
        extra['raw_labels'] = np.asarray(res['raw_labels'], np.int64)
    else:
        extra['per_camera'] = res['per_camera']
        extra['rarest_camera'] = res['rarest_camera']
    record = build_record(
        split.ids, res['likelihood'], res['cluster_id'], res['cluster_size'],
        id_key=split.id_key, dataset=split.describe(), embedder=emb_cfg,
        reducer=res['reducer'], clusterer=res['clusterer'],
        likelihood_def=s.likelihood_def, aggregation=res['aggregation'],
        extra=extra)
    save_likelihood_file(record, out, overwrite=s.overwrite)
    write_csv(record, paths['csv'], s.eta, s.gamma)
    atomic_write_json(paths['summary'], summarize(record, s.eta, s.gamma),
                      overwrite=s.overwrite)
    logger.info(f'likelihood file written: {out} (+ {paths["csv"]}, '
                f'{paths["summary"]})')
    if s.figures:
        from .figures import write_scoring_figures
        figs = write_scoring_figures(record, res, split, paths['figures'],
                                     s, cams)
        logger.info(f'figures: {sorted(figs.values())}')
    if s.save_scorer or others or s.slice_file:
        write_scorer_outputs(out, record, res, split, emb_model, cams,
                             others, s, paths, config_path, logger)
    return record
