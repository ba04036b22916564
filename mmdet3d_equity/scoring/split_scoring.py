"""Score another split (val, test) against the training split's fitted
reduction and clustering, and report the likelihood of each slice.

``compute_likelihoods(..., save_scorer=True)`` writes ``<stem>_scorer.npz``
next to the training likelihood file: the fitted PCA and clustering
(:class:`FittedScorer`, arrays + JSON, no pickle) with how the embeddings
were made. :func:`score_other_split` (``tools/score_split.py``) embeds the
val split with the same embedder, scores it with the saved scorer, so its
likelihoods are on the training split's scale (see :class:`FittedScorer`
for what that means per clusterer), and writes a likelihood file of the val
split (``dataset.split = 'val'``; the slice metric bins it into rare /
medium / common). ``compute_likelihoods(..., score_splits=('val',))`` does
the same in the run that fits.

:func:`slice_likelihood_report` gives, for a slice file (e.g. the tiny
dataset's frame_modes.json), the likelihood of each slice's samples, so a
user sees at once whether the scorer found the rare mode.
"""
import json
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..utils.errors import ConfigError, ScoringError
from .cameras import embedding_views, score_views
from .clustering import load_scorer
from .dataset_source import Split
from .outputs import (
    output_stem,
    scorer_path,
    slice_report_path,
    split_output_path,
)
from .settings import EVAL_SPLITS, build_embedder

#: run options of the embedder saved in the scorer file (they change the
#: numbers); batch size, device and workers do not and are chosen anew
REBUILD_RUN_FIELDS = ('seed', 'amp', 'amp_dtype', 'channels_last')

__all__ = ['EVAL_SPLITS', 'apply_scorers', 'score_other_split',
           'scorer_path', 'slice_likelihood_report', 'slice_report_path',
           'split_output_path', 'verify_embedder']


# ------------------------------------------------------------ applying
def apply_scorers(emb: np.ndarray, scorers: Mapping, aggregation) -> Dict:
    """Score (N, C, D) embeddings with the training scorers, aggregating the
    cameras as the training split was (``aggregation`` record)."""
    names = [name for name, _ in embedding_views(emb, aggregation)]
    if set(names) != set(scorers):
        raise ScoringError(f'the scorer file holds scorers {sorted(scorers)}'
                           f' but its aggregation '
                           f'{(aggregation or {}).get("mode", "single")!r} '
                           f'needs {sorted(names)}')
    res = score_views(emb, aggregation,
                      lambda name, x: scorers[name].score(x))
    if 'per_camera' in res:
        res['per_camera'] = {cam: dict(likelihood=r['likelihood'])
                             for cam, r in res['per_camera'].items()}
    return res


def scorer_meta(split: Split, emb_model, embedder_args: Mapping, cams,
                img_prefix, res: Mapping, likelihood_def, density_k,
                config_path) -> Dict:
    """Provenance saved with the scorers (see :func:`save_scorer`);
    ``embedder_args``: the embedder's registry config without the
    options that do not change the numbers (batch size, device, workers),
    to rebuild it."""
    from ..utils.likelihood_file import package_versions
    return dict(
        embedder_args=json.loads(json.dumps(dict(embedder_args),
                                            default=str)),
        embedder_config=json.loads(json.dumps(emb_model.config(),
                                              default=str)),
        cameras=None if cams is None else list(cams), img_prefix=img_prefix,
        aggregation=res['aggregation'], likelihood_def=likelihood_def,
        density_k=int(density_k),
        reducer=json.loads(json.dumps(res['reducer'], default=str)),
        clusterer=json.loads(json.dumps(res['clusterer'], default=str)),
        dataset=split.describe(), fingerprint=split.fingerprint,
        config=config_path,
        versions=package_versions())


def verify_embedder(cfg, emb_model, scorers, meta, img_prefix=None,
                    num: int = 2, rtol: float = 1e-2, logger=None) -> None:
    """Check that ``emb_model`` reproduces the training embeddings: the
    config's training split must be the one the scorer was fitted on, and
    re-embedding its first ``num`` samples must give their saved reduced
    embeddings (relative error below ``rtol``)."""
    split = Split(cfg, 'train', img_prefix=img_prefix, logger=logger)
    if split.fingerprint != meta['fingerprint']:
        raise ScoringError(
            'the config\'s training split is not the one the scorer was '
            f'fitted on (fingerprint {split.fingerprint[:12]} vs '
            f'{meta["fingerprint"][:12]}): give the config used with '
            'compute_likelihoods')
    rows = list(range(min(num, len(split))))
    emb = emb_model.embed_rows(split, rows, meta['cameras'], img_prefix)
    checks = embedding_views(emb, meta['aggregation'])
    for name, x in checks:
        s = scorers[name]
        z = s.transform(x)
        ref = s.train_z[rows]
        err = np.linalg.norm(z - ref) / max(np.linalg.norm(ref), 1e-12)
        if not err < rtol:
            raise ScoringError(
                f'the embedder does not reproduce the training embeddings '
                f'(relative error {err:.3g} on the first {len(rows)} '
                f'training samples, scorer {name!r}): the checkpoint or the '
                'images changed since the scorer was saved. Re-run '
                'compute_likelihoods --save-scorer.')
    if logger:
        logger.info(f'embedder verified on {len(rows)} training samples')


def build_split_record(esplit: Split, res: Mapping, meta: Mapping,
                       scorer_file: Optional[str], train_out=None):
    from ..utils.likelihood_file import build_record
    extra = dict(scored_against=dict(
        train_fingerprint=meta['fingerprint'], train_dataset=meta['dataset'],
        scorer_file=scorer_file, likelihood_file=train_out,
        rule='FittedScorer: see mmdet3d_equity.scoring.clustering'))
    if 'rarest_camera' in res:
        extra['rarest_camera'] = list(res['rarest_camera'])
    return build_record(
        esplit.ids, res['likelihood'], res['cluster_id'],
        res['cluster_size'], id_key=esplit.id_key,
        dataset=esplit.describe(), embedder=meta['embedder_config'],
        reducer=meta['reducer'], clusterer=meta['clusterer'],
        likelihood_def=meta['likelihood_def'],
        aggregation=meta['aggregation'], extra=extra)


def score_other_split(config, scorer_file: str, out: str, *,
                      split: str = 'val', device: str = 'cpu',
                      batch_size: int = 8, cache_dir: Optional[str] = None,
                      use_cache: bool = True, overwrite: bool = False,
                      verify: bool = True, slice_file: Optional[str] = None,
                      eta: float = 1.0, gamma: float = 5.0,
                      cfg_options=None, logger=None) -> dict:
    """Score ``split`` of ``config`` with a saved scorer; write the split's
    likelihood file ``out`` (+ ``.csv``, and with ``slice_file`` a slice
    report ``<stem>_slices.json`` and figure ``<stem>_slices.png``).
    Returns the record."""
    from ..utils.config import load_config
    from ..utils.fileio import check_output_dir
    from ..utils.likelihood_file import save_likelihood_file
    from .embedding import embed_split
    from .outputs import get_logger, refuse_existing, write_csv
    logger = logger or get_logger()
    scorers, meta = load_scorer(scorer_file)
    for s in scorers.values():
        s.check_usable()
    refuse_existing([out, output_stem(out) + '.csv'] + (
        [slice_report_path(out), output_stem(out) + '_slices.png']
        if slice_file else []), overwrite)
    check_output_dir(osp.dirname(osp.abspath(out)))
    if slice_file:
        from ..evaluation.slice_sources import read_slice_file
        read_slice_file(slice_file)  # fail fast
    try:
        cfg = load_config(config, cfg_options)
    except ConfigError as e:
        raise ScoringError(str(e)) from e
    args = dict(meta['embedder_args'])
    run = {k: args.pop(k) for k in REBUILD_RUN_FIELDS if k in args}
    emb_model = build_embedder(args, dict(run, batch_size=batch_size,
                                          device=device, logger=logger))
    now = json.loads(json.dumps(emb_model.config(), default=str))
    if now != meta['embedder_config']:
        raise ScoringError(f'the rebuilt embedder {now} differs from the one '
                           f'the scorer was fitted with '
                           f'{meta["embedder_config"]}')
    img_prefix = meta.get('img_prefix')
    if verify:
        verify_embedder(cfg, emb_model, scorers, meta, img_prefix,
                        logger=logger)
    if split not in EVAL_SPLITS:
        raise ScoringError(f'split must be one of {EVAL_SPLITS}, got '
                           f'{split!r} (the training split is scored by '
                           'compute_likelihoods itself)')
    esplit = Split(cfg, split, img_prefix=img_prefix, logger=logger)
    logger.info(f'{split} split: {esplit.type}, {len(esplit)} samples '
                f'({esplit.ann_file})')
    if cache_dir is None:
        cache_dir = osp.join(osp.dirname(osp.abspath(out)), 'embedding_cache')
    emb = embed_split(esplit, emb_model, meta['cameras'], img_prefix,
                      cache_dir, use_cache, logger)
    res = apply_scorers(emb, scorers, meta['aggregation'])
    record = build_split_record(esplit, res, meta, scorer_file)
    save_likelihood_file(record, out, overwrite=overwrite)
    write_csv(record, output_stem(out) + '.csv', eta, gamma)
    logger.info(f'{split} likelihoods written: {out}')
    if slice_file:
        data = {split: (record['sample_ids'], record['likelihood'])}
        report = slice_likelihood_report(slice_file, data)
        write_slice_report(report, slice_report_path(out),
                           output_stem(out) + '_slices.png', data,
                           overwrite=overwrite, logger=logger)
    return record


# ------------------------------------------------------- slice report
def slice_stats(ids: Sequence[str], likelihood, members) -> Dict:
    p = np.asarray(likelihood, np.float64)
    sel = np.array([i in members for i in ids], bool)
    v = p[sel]
    if not len(v):
        return dict(num_samples=0, median=None, mean=None, q25=None,
                    q75=None, min=None, max=None)
    return dict(num_samples=int(len(v)), median=float(np.median(v)),
                mean=float(v.mean()), q25=float(np.quantile(v, 0.25)),
                q75=float(np.quantile(v, 0.75)), min=float(v.min()),
                max=float(v.max()))


def slice_likelihood_report(slice_file: str, splits: Mapping) -> Dict:
    """``{split: {slice: stats}}`` for ``splits`` = ``{split: (ids, p)}``;
    stats: number of samples, median, mean, quartiles, min, max of p."""
    from ..evaluation.slice_sources import read_slice_file
    slices, names = read_slice_file(slice_file)
    out = OrderedDict(slice_file=slice_file, splits=OrderedDict())
    for split, (ids, p) in splits.items():
        ids = [str(i) for i in ids]
        stats = OrderedDict((n, slice_stats(ids, p, slices[n]))
                            for n in names)
        stats['all'] = slice_stats(ids, p, set(ids))
        out['splits'][split] = stats
    return out


def format_slice_report(report: Mapping) -> str:
    lines = [f'likelihood p by slice ({report["slice_file"]}):']
    for split, stats in report['splits'].items():
        lines.append(f'  {split}:')
        lines.append(f'    {"slice":<14} {"n":>6} {"median":>8} {"mean":>8} '
                     f'{"q25":>8} {"q75":>8}')
        for name, s in stats.items():
            if not s['num_samples']:
                lines.append(f'    {name:<14} {0:>6} {"-":>8} {"-":>8} '
                             f'{"-":>8} {"-":>8}')
                continue
            lines.append(f'    {name:<14} {s["num_samples"]:>6} '
                         f'{s["median"]:>8.3f} {s["mean"]:>8.3f} '
                         f'{s["q25"]:>8.3f} {s["q75"]:>8.3f}')
    return '\n'.join(lines)


def write_slice_report(report: Mapping, path: str,
                       figure: Optional[str] = None,
                       data: Optional[Mapping] = None,
                       overwrite: bool = False, logger=None) -> List[str]:
    """Write the report (JSON), optionally its figure (``data`` =
    ``{split: (ids, p)}``), and log it. Returns the files written."""
    from ..utils.fileio import atomic_write_json
    text = format_slice_report(report)
    if logger is not None:
        logger.info(text)
    else:
        print(text)
    written = [atomic_write_json(path, report, overwrite=overwrite)]
    if figure and data:
        from ..evaluation.slice_sources import read_slice_file
        from ..visualization.slice_plots import plot_likelihood_by_slice
        slices, names = read_slice_file(report['slice_file'])
        written.append(plot_likelihood_by_slice(data, slices, names, figure,
                                                overwrite=overwrite))
    return written


def check_split_names(cfg, splits: Sequence[str]) -> List[str]:
    """``score_splits`` exist in the config (before any work)."""
    out = []
    for s in splits:
        if s not in EVAL_SPLITS:
            raise ScoringError(f'--score-split {s!r}: one of {EVAL_SPLITS}')
        dl = cfg.get(f'{s}_dataloader', None)
        if not dl or 'dataset' not in dl:
            raise ScoringError(f'--score-split {s}: the config has no '
                               f'{s}_dataloader.dataset')
        out.append(s)
    return out


def write_scorer_outputs(out, record, res, split, emb_model, cams, others,
                         settings, paths, config_path, logger):
    """The scorer file, the other splits' likelihood files and the slice
    report of a compute_likelihoods run (rank 0, after the training
    split's outputs)."""
    from ..utils.likelihood_file import save_likelihood_file
    from .clustering import save_scorer
    from .outputs import write_csv
    s = settings
    embedder_args = dict(s.embedder_cfg(), seed=int(s.seed), amp=bool(s.amp),
                         amp_dtype=emb_model.options.amp_dtype,
                         channels_last=bool(s.channels_last))
    meta = scorer_meta(split, emb_model, embedder_args, cams, s.img_prefix,
                       res, s.likelihood_def, s.density_k, config_path)
    sfile = None
    if s.save_scorer:
        sfile = save_scorer(scorer_path(out), res['scorers'], meta,
                            overwrite=s.overwrite)
        logger.info(f'scorer written: {sfile} (score other splits with '
                    'tools/score_split.py)')
    data = OrderedDict(train=(record['sample_ids'], record['likelihood']))
    for name, (esplit, emb) in others.items():
        r = apply_scorers(emb, res['scorers'], res['aggregation'])
        rec = build_split_record(esplit, r, meta, sfile, out)
        path = split_output_path(out, name)
        save_likelihood_file(rec, path, overwrite=s.overwrite)
        write_csv(rec, output_stem(path) + '.csv', s.eta, s.gamma)
        logger.info(f'{name} split scored against the training fit: {path}')
        data[name] = (rec['sample_ids'], rec['likelihood'])
    if s.slice_file:
        report = slice_likelihood_report(s.slice_file, data)
        figure = osp.join(paths['figures'], 'likelihood_by_slice.png') \
            if s.figures else None
        write_slice_report(report, slice_report_path(out), figure, data,
                           overwrite=s.overwrite, logger=logger)
