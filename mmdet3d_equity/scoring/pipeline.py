"""End to end: dataset config -> embeddings -> clusters -> likelihood file.

:func:`compute_likelihoods` is what ``tools/compute_likelihoods.py`` runs.
Outputs, next to ``out`` (``<stem>`` = ``out`` without ``.npz``):

* ``out``                  the likelihood file (see likelihood_file.py)
* ``<stem>.csv``           sample_id, likelihood, cluster_id, cluster_size,
                           weight (W(p; eta, gamma))
* ``<stem>_summary.json``  counts, cluster sizes, likelihood quantiles
* ``<stem>_figures/``      projection, histogram, weight curve, thumbnails
* embeddings cache         ``<cache_dir>/emb_<key>.npz`` (default
                           ``<dir of out>/embedding_cache``), keyed by the
                           embedder config, cameras, data root and dataset
                           fingerprint.
"""
import copy
import csv
import hashlib
import json
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from .clustering import (DEFAULT_CLUSTERER, DEFAULT_LIKELIHOOD,
                         DEFAULT_REDUCER, ScoringError, check_embeddings,
                         combine_camera_scores, score_embeddings,
                         validate_scoring_params)
from .dataset_source import TrainSplit
from .dist import dist_info, gather_rows, shard_indices
from ..utils.fileio import (OutputExistsError, atomic_write_json,
                      atomic_write_text, check_output_dir)
from ..utils.likelihood_file import build_record, save_likelihood_file

CAMERA_AGGREGATIONS = ('concat', 'mean', 'likelihood-min', 'likelihood-mean')
EMBEDDERS = ('image', 'detector')


def output_paths(out: str) -> Dict[str, str]:
    """Every file a run with likelihood file ``out`` writes (``log``: the
    command-line tool's log)."""
    stem = out[:-4] if out.endswith('.npz') else out
    return dict(record=out, csv=stem + '.csv',
                summary=stem + '_summary.json', figures=stem + '_figures',
                log=stem + '.log')


def check_outputs(out: str, overwrite: bool = False, figures: bool = True,
                  cache_dir: Optional[str] = None,
                  include_log: bool = False) -> Dict[str, str]:
    """Before any work: ``out`` names a ``.npz``, its directory (and the
    cache directory) can be written, and no output exists unless
    ``overwrite``. Raises ScoringError / OutputError / OutputExistsError
    naming the problem; nothing is created but the directories."""
    if not out.endswith('.npz'):
        raise ScoringError(f'--out must end with .npz (likelihood files are '
                           f'NumPy archives), got {out!r}')
    paths = output_paths(out)
    if not overwrite:
        names = ['record', 'csv', 'summary'] + (['log'] if include_log
                                                else [])
        exists = [paths[k] for k in names if osp.lexists(paths[k])]
        if figures and osp.isdir(paths['figures']) and \
                os.listdir(paths['figures']):
            exists.append(paths['figures'])
        if exists:
            raise OutputExistsError(
                f'output(s) {exists} already exist; pass --overwrite '
                '(overwrite=True) to replace them, or choose another --out')
    check_output_dir(osp.dirname(osp.abspath(out)), 'output')
    if cache_dir:
        check_output_dir(cache_dir, 'embedding cache')
    return paths


def get_logger(log_file: Optional[str] = None):
    from mmengine.logging import MMLogger
    name = 'mmdet3d_equity.scoring'
    if MMLogger.check_instance_created(name):
        return MMLogger.get_instance(name)
    return MMLogger.get_instance(name, log_file=log_file, log_level='INFO')


def _key(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode('utf-8')
    return hashlib.sha256(blob).hexdigest()[:16]


# ------------------------------------------------------------ embeddings
def build_embedder(embedder: str = 'image', *, backbone=None,
                   checkpoint=None, input_size=384, resize='squash',
                   detector_config=None, detector_checkpoint=None, seed=0,
                   batch_size=8, device='cpu', num_workers=2, amp=False,
                   amp_dtype=None, channels_last=False, logger=None):
    from .embedders import DetectorEmbedder, ImageBackboneEmbedder
    run = dict(batch_size=batch_size, device=device, logger=logger,
               num_workers=num_workers, amp=amp, amp_dtype=amp_dtype,
               channels_last=channels_last)
    if embedder == 'image':
        if detector_config or detector_checkpoint:
            raise ScoringError('--detector-config/--detector-checkpoint are '
                               'for --embedder detector')
        return ImageBackboneEmbedder(backbone, checkpoint, input_size, resize,
                                     seed=seed, **run)
    if embedder == 'detector':
        if not detector_config:
            raise ScoringError('--embedder detector needs --detector-config '
                               'and --detector-checkpoint')
        return DetectorEmbedder(detector_config, detector_checkpoint, **run)
    raise ScoringError(f'unknown embedder {embedder!r}; choose one of '
                       f'{EMBEDDERS}')


def read_embedding_cache(path: str, split: TrainSplit, logger=None
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


def embed_split(split: TrainSplit, embedder, cameras: Optional[List[str]],
                img_prefix: Optional[str] = None, cache_dir=None,
                use_cache: bool = True, logger=None) -> np.ndarray:
    """(N, C, D) float32 embeddings of the split (C = #cameras, 1 for the
    detector embedder), computed on this rank's shard through the
    embedder's DataLoader and gathered; read from / written to the cache
    when ``use_cache`` (an unreadable cache file is re-embedded and
    replaced, with a warning)."""
    from mmengine.utils import ProgressBar

    from ..utils.fileio import atomic_savez, check_output_dir
    from .embedders import iter_embeddings
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
    if embedder.kind == 'image_backbone':
        paths = split.image_paths(cameras, img_prefix)
        data = embedder.dataset([paths[i] for i in mine],
                                [split.ids[i] for i in mine], cameras)
    else:
        data = embedder.dataset([split.infos[i] for i in mine],
                                [split.ids[i] for i in mine], split.dataset)
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


# --------------------------------------------------------------- scoring
def score_split(emb: np.ndarray, ids: Sequence[str], cameras,
                camera_aggregation: Optional[str], reducer, clusterer,
                likelihood_def, density_k=10, seed=0, logger=None) -> Dict:
    """Score (N, C, D) embeddings; returns score dict + aggregation record."""
    n, c, d = emb.shape
    for ci in range(c):
        check_embeddings(emb[:, ci], ids)
    kw = dict(reducer=reducer, clusterer=clusterer,
              likelihood_def=likelihood_def, density_k=density_k, seed=seed,
              ids=ids, logger=logger)
    if c == 1:
        res = score_embeddings(emb[:, 0], **kw)
        agg = None if cameras is None else dict(cameras=list(cameras),
                                                mode='single')
        return dict(res, aggregation=agg,
                    scorers={'embedding': res['scorer']})
    if camera_aggregation not in CAMERA_AGGREGATIONS:
        raise ScoringError(f'{c} cameras per sample need --camera-aggregation'
                           f' in {CAMERA_AGGREGATIONS}, got '
                           f'{camera_aggregation!r}')
    if camera_aggregation == 'concat':
        res = score_embeddings(emb.reshape(n, c * d), **kw)
        return dict(res, aggregation=dict(cameras=list(cameras),
                                          mode='concat', level='embedding'),
                    scorers={'embedding': res['scorer']})
    if camera_aggregation == 'mean':
        res = score_embeddings(emb.mean(axis=1), **kw)
        return dict(res, aggregation=dict(cameras=list(cameras), mode='mean',
                                          level='embedding'),
                    scorers={'embedding': res['scorer']})
    per_cam = {cam: score_embeddings(emb[:, ci], **kw)
               for ci, cam in enumerate(cameras)}
    op = camera_aggregation.split('-')[1]
    comb = combine_camera_scores(per_cam, op)
    first = per_cam[cameras[0]]
    res = dict(first, likelihood=comb['likelihood'],
               cluster_id=comb['cluster_id'],
               cluster_size=comb['cluster_size'])
    res['per_camera'] = {cam: dict(
        likelihood=r['likelihood'], cluster_id=r['cluster_id'],
        cluster_size=r['cluster_size']) for cam, r in per_cam.items()}
    res['rarest_camera'] = comb['rarest_camera']
    res['scorers'] = {cam: r['scorer'] for cam, r in per_cam.items()}
    res['reducer'] = {cam: r['reducer'] for cam, r in per_cam.items()}
    res['clusterer'] = dict(first['clusterer'], per_camera={
        cam: r['clusterer'] for cam, r in per_cam.items()})
    return dict(res, aggregation=dict(
        cameras=list(cameras), mode=camera_aggregation, level='likelihood',
        op=op, cluster_id_rule='cluster of the camera with the lowest '
        'likelihood, ids made unique as camera_index * stride + id'))


def summarize(record: Mapping, eta: float, gamma: float) -> Dict:
    lik = np.asarray(record['likelihood'])
    cid = np.asarray(record['cluster_id'])
    _, counts = np.unique(cid, return_counts=True)
    counts = np.sort(counts)[::-1]
    qs = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    from ..models.losses.equity_weight import equity_weight
    w = equity_weight(lik, eta, gamma)
    return dict(
        num_samples=int(len(lik)), num_clusters=int(len(counts)),
        num_singletons=int((counts == 1).sum()),
        num_noise=int(record['clusterer'].get('num_noise', 0))
        if isinstance(record['clusterer'], Mapping) else None,
        cluster_sizes=[int(c) for c in counts],
        likelihood_def=record['likelihood_def'],
        likelihood_quantiles={str(q): float(np.quantile(lik, q)) for q in qs},
        likelihood_mean=float(lik.mean()),
        weight=dict(eta=float(eta), gamma=float(gamma),
                    min=float(w.min()), max=float(w.max()),
                    mean=float(w.mean())),
        fingerprint=record['fingerprint'], created=record['created'])


def write_csv(record: Mapping, path: str, eta: float, gamma: float) -> None:
    import io
    from ..models.losses.equity_weight import equity_weight
    w = equity_weight(np.asarray(record['likelihood']), eta, gamma)
    buf = io.StringIO()
    wr = csv.writer(buf)
    wr.writerow(['sample_id', 'likelihood', 'cluster_id', 'cluster_size',
                 'weight'])
    for sid, p, c, s, wi in zip(record['sample_ids'], record['likelihood'],
                                record['cluster_id'], record['cluster_size'],
                                w):
        wr.writerow([sid, repr(float(p)), int(c), int(s), repr(float(wi))])
    # checked up front by check_outputs (refused unless --overwrite)
    atomic_write_text(path, buf.getvalue(), overwrite=True)


# ------------------------------------------------------------------ main
def check_scoring_options(out: str, *, overwrite: bool = False,
                          figures: bool = True,
                          cache_dir: Optional[str] = None,
                          use_cache: bool = True, eta: float = 1.0,
                          gamma: float = 5.0,
                          reducer: Optional[Mapping] = DEFAULT_REDUCER,
                          clusterer: Optional[Mapping] = DEFAULT_CLUSTERER,
                          likelihood_def: str = DEFAULT_LIKELIHOOD,
                          save_scorer: bool = False,
                          score_splits: Sequence[str] = (),
                          slice_file: Optional[str] = None,
                          include_log: bool = False,
                          **_) -> Dict[str, str]:
    """Every check of :func:`compute_likelihoods` that needs no data, made
    before anything is written (tools/compute_likelihoods.py makes it before
    it opens its log file): parameters, scorer options, the outputs (none
    exists unless ``overwrite``; ``include_log``: the tool's log file
    counts as an output). Returns the output paths. Other keyword
    arguments of compute_likelihoods are accepted and ignored."""
    from ..models.losses.equity_weight import equity_weight
    try:  # validates eta / gamma, naming them
        equity_weight(0.5, eta, gamma)
    except (TypeError, ValueError) as e:
        raise ScoringError(f'--eta/--gamma (the W(p) of the CSV weight '
                           f'column and figures): {e}') from e
    validate_scoring_params(reducer, clusterer, likelihood_def)
    extra_outputs = _check_scorer_options(out, clusterer, likelihood_def,
                                          save_scorer, score_splits,
                                          slice_file)
    if cache_dir is None:
        cache_dir = osp.join(osp.dirname(osp.abspath(out)), 'embedding_cache')
    paths = check_outputs(out, overwrite, figures,
                          cache_dir if use_cache else None, include_log)
    if not overwrite:
        exists = [p for p in extra_outputs if osp.lexists(p)]
        if exists:
            raise OutputExistsError(
                f'output(s) {exists} already exist; pass --overwrite '
                '(overwrite=True) to replace them, or choose another --out')
    return paths


def compute_likelihoods(config, out: str, *, embedder: str = 'image',
                        backbone: Optional[Mapping] = None,
                        checkpoint: Optional[str] = None,
                        input_size=384, resize: str = 'squash',
                        detector_config: Optional[str] = None,
                        detector_checkpoint: Optional[str] = None,
                        cameras: Optional[Sequence[str]] = None,
                        camera_aggregation: Optional[str] = None,
                        img_prefix: Optional[str] = None,
                        reducer: Optional[Mapping] = DEFAULT_REDUCER,
                        clusterer: Optional[Mapping] = DEFAULT_CLUSTERER,
                        likelihood_def: str = DEFAULT_LIKELIHOOD,
                        density_k: int = 10, seed: int = 0,
                        batch_size: int = 8, device: str = 'cpu',
                        num_workers: int = 2, amp: bool = False,
                        amp_dtype: Optional[str] = None,
                        channels_last: bool = False,
                        cache_dir: Optional[str] = None,
                        use_cache: bool = True, overwrite: bool = False,
                        eta: float = 1.0, gamma: float = 5.0,
                        figures: bool = True, cfg_options=None,
                        save_scorer: bool = False,
                        score_splits: Sequence[str] = (),
                        slice_file: Optional[str] = None,
                        logger=None) -> Optional[dict]:
    """Score the training split of ``config`` and write the outputs.

    ``config`` is a path (or an mmengine Config). Runs distributed when
    mmengine.dist is initialised: every rank embeds its shard, rank 0
    clusters and writes; returns the record on rank 0, None elsewhere.

    ``save_scorer``: also write ``<stem>_scorer.npz``, the fitted reduction
    and clustering, to score other splits later (tools/score_split.py).
    ``score_splits`` (e.g. ``('val',)``): score those splits against the
    training fit in this run (``<stem>_<split><ext>`` + ``.csv``).
    ``slice_file``: report (log, ``<stem>_slices.json``, figure) the
    likelihood of each slice's samples (e.g. frame_modes.json).
    """
    from mmengine.config import Config
    from ..utils.config import ConfigError, load_config
    logger = logger or get_logger()
    rank, world = dist_info()
    if cache_dir is None:
        cache_dir = osp.join(osp.dirname(osp.abspath(out)), 'embedding_cache')
    paths = check_scoring_options(
        out, overwrite=overwrite, figures=figures, cache_dir=cache_dir,
        use_cache=use_cache, eta=eta, gamma=gamma, reducer=reducer,
        clusterer=clusterer, likelihood_def=likelihood_def,
        save_scorer=save_scorer, score_splits=score_splits,
        slice_file=slice_file)
    if isinstance(config, Config):
        cfg, config_path = config, getattr(config, 'filename', None)
    else:
        try:
            cfg = load_config(config, cfg_options)
        except ConfigError as e:
            raise ScoringError(str(e)) from e
        config_path = config
    if camera_aggregation is not None and \
            camera_aggregation not in CAMERA_AGGREGATIONS:
        raise ScoringError(f'unknown camera aggregation '
                           f'{camera_aggregation!r}; choose one of '
                           f'{CAMERA_AGGREGATIONS}')
    from .split_scoring import EvalSplit, check_split_names
    score_splits = check_split_names(cfg, score_splits)
    split = TrainSplit(cfg, img_prefix=img_prefix, logger=logger)
    logger.info(f'training split: {split.type}, {len(split)} samples '
                f'(ann_file {split.ann_file}, wrappers {split.wrappers})')
    # the other splits are read before the long embedding of the training
    # split, so a problem with them is found in seconds
    eval_splits = OrderedDict()
    for name in score_splits:
        eval_splits[name] = EvalSplit(cfg, name, img_prefix=img_prefix,
                                      logger=logger)
        logger.info(f'{name} split: {eval_splits[name].type}, '
                    f'{len(eval_splits[name])} samples (ann_file '
                    f'{eval_splits[name].ann_file})')
    emb_model = build_embedder(
        embedder, backbone=backbone, checkpoint=checkpoint,
        input_size=input_size, resize=resize,
        detector_config=detector_config,
        detector_checkpoint=detector_checkpoint, seed=seed,
        batch_size=batch_size, device=device, num_workers=num_workers,
        amp=amp, amp_dtype=amp_dtype, channels_last=channels_last,
        logger=logger)
    cams = None
    if embedder == 'image':
        cams = split.resolve_cameras(cameras)
        if len(cams) > 1 and camera_aggregation is None:
            camera_aggregation = 'likelihood-min'
            logger.info(f'{len(cams)} cameras {cams}: per-camera '
                        'likelihoods combined by min (--camera-aggregation '
                        'likelihood-min)')
        for c in cams:
            pre = split.image_prefix(c, img_prefix)
            if pre is not None and not img_prefix and not (
                    split.raw_cfg.get('data_prefix') or {}).get(c) and not (
                    split.raw_cfg.get('data_prefix') or {}).get('img'):
                logger.info(f'camera {c}: the config names no image folder; '
                            f'using the standard layout {pre}')
    elif cameras:
        raise ScoringError('--cameras applies to the image embedder only; '
                           'the detector embedder sees what its test '
                           'pipeline loads')
    emb = embed_split(split, emb_model, cams, img_prefix, cache_dir,
                      use_cache, logger)
    others = OrderedDict()
    for name, esplit in eval_splits.items():  # every rank embeds its shard
        others[name] = (esplit, embed_split(esplit, emb_model, cams,
                                            img_prefix, cache_dir, use_cache,
                                            logger))
    if rank != 0:
        return None
    logger.info(f'embeddings {emb.shape}; clustering with reducer={reducer}'
                f' clusterer={clusterer} likelihood={likelihood_def}')
    res = score_split(emb, split.ids, cams, camera_aggregation,
                      copy.deepcopy(reducer), copy.deepcopy(clusterer),
                      likelihood_def, density_k, seed, logger)
    emb_cfg = dict(emb_model.config(), dim=int(emb.shape[2]),
                   num_cameras=int(emb.shape[1]), seed=int(seed))
    extra = dict(config=config_path, world_size=int(world),
                 eta_gamma_for_csv=dict(eta=float(eta), gamma=float(gamma)))
    if 'per_camera' not in res:
        extra['raw_labels'] = np.asarray(res['raw_labels'], np.int64)
    else:
        extra['per_camera'] = res['per_camera']
        extra['rarest_camera'] = res['rarest_camera']
    record = build_record(
        split.ids, res['likelihood'], res['cluster_id'], res['cluster_size'],
        id_key=split.id_key, dataset=split.describe(), embedder=emb_cfg,
        reducer=res['reducer'], clusterer=res['clusterer'],
        likelihood_def=likelihood_def, aggregation=res['aggregation'],
        extra=extra)
    save_likelihood_file(record, out, overwrite=overwrite)
    write_csv(record, paths['csv'], eta, gamma)
    atomic_write_json(paths['summary'], summarize(record, eta, gamma),
                      overwrite=overwrite)
    logger.info(f'likelihood file written: {out} (+ {paths["csv"]}, '
                f'{paths["summary"]})')
    if figures:
        from ..visualization.scoring_plots import save_scoring_figures
        figs = save_scoring_figures(record, res['reduced'], split,
                                    paths['figures'], eta=eta, gamma=gamma,
                                    cameras=cams, img_prefix=img_prefix,
                                    overwrite=overwrite)
        logger.info(f'figures: {sorted(figs.values())}')
    if save_scorer or others or slice_file:
        _scorer_outputs(
            out, record, res, split, emb_model, cams, img_prefix, others,
            slice_file, save_scorer, overwrite, eta, gamma, figures, paths,
            config_path, likelihood_def, density_k,
            dict(embedder=embedder, backbone=backbone, checkpoint=checkpoint,
                 input_size=list(input_size) if isinstance(
                     input_size, (list, tuple)) else input_size,
                 resize=resize, detector_config=detector_config,
                 detector_checkpoint=detector_checkpoint, seed=int(seed),
                 amp=bool(amp), amp_dtype=emb_model.options.amp_dtype,
                 channels_last=bool(channels_last)),
            logger)
    return record


def _check_scorer_options(out, clusterer, likelihood_def, save_scorer,
                          score_splits, slice_file) -> List[str]:
    """Fail fast on scorer / split / slice options; return their outputs."""
    from .split_scoring import (scorer_path, slice_report_path,
                                split_output_path)
    outputs = []
    if save_scorer or score_splits:
        kind = str((clusterer or DEFAULT_CLUSTERER).get('type', '')).lower()
        if kind == 'hdbscan' and likelihood_def != 'density':
            raise ScoringError(
                "--save-scorer / --score-split: scikit-learn's HDBSCAN "
                'cannot place new samples in a fitted clustering; use '
                '--clusterer kmeans/gmm/dbscan or --likelihood density')
    if save_scorer:
        outputs.append(scorer_path(out))
    for s in score_splits or ():
        outputs += [split_output_path(out, s),
                    osp.splitext(split_output_path(out, s))[0] + '.csv']
    if slice_file:
        from ..evaluation.slice_sources import SliceError, read_slice_file
        try:
            read_slice_file(slice_file)
        except SliceError as e:
            raise ScoringError(str(e)) from e
        outputs.append(slice_report_path(out))
    return outputs


def _scorer_outputs(out, record, res, split, emb_model, cams, img_prefix,
                    others, slice_file, save_scorer, overwrite, eta, gamma,
                    figures, paths, config_path, likelihood_def, density_k,
                    embedder_args, logger):
    """The scorer file, the other splits' likelihood files, the slice
    report (rank 0, after the training split's outputs)."""
    from .clustering import save_scorer as _save
    from .split_scoring import (apply_scorers, build_split_record,
                                scorer_meta, scorer_path,
                                slice_likelihood_report, slice_report_path,
                                split_output_path, write_slice_report)
    meta = scorer_meta(split, emb_model, embedder_args, cams, img_prefix, res,
                       likelihood_def, density_k, config_path)
    sfile = None
    if save_scorer:
        sfile = _save(scorer_path(out), res['scorers'], meta,
                      overwrite=overwrite)
        logger.info(f'scorer written: {sfile} (score other splits with '
                    'tools/score_split.py)')
    data = OrderedDict(train=(record['sample_ids'], record['likelihood']))
    for name, (esplit, emb) in others.items():
        r = apply_scorers(emb, res['scorers'], res['aggregation'])
        rec = build_split_record(esplit, r, meta, sfile, out)
        path = split_output_path(out, name)
        save_likelihood_file(rec, path, overwrite=overwrite)
        write_csv(rec, osp.splitext(path)[0] + '.csv', eta, gamma)
        logger.info(f'{name} split scored against the training fit: {path}')
        data[name] = (rec['sample_ids'], rec['likelihood'])
    if slice_file:
        report = slice_likelihood_report(slice_file, data)
        figure = osp.join(paths['figures'], 'likelihood_by_slice.png') \
            if figures else None
        write_slice_report(report, slice_report_path(out), figure, data,
                           overwrite=overwrite, logger=logger)
