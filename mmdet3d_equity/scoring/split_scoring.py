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
import copy
import json
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from .clustering import ScoringError, combine_camera_scores, load_scorer
from .dataset_source import WRAPPERS, TrainSplit, _type_name

EVAL_SPLITS = ('val', 'test')


# ------------------------------------------------------------ file names
def output_stem(out: str) -> str:
    return osp.splitext(out)[0]


def scorer_path(out: str) -> str:
    """The scorer file saved with the likelihood file ``out``."""
    return output_stem(out) + '_scorer.npz'


def split_output_path(out: str, split: str) -> str:
    """The likelihood file of ``split`` scored with ``out``'s scorer."""
    stem, ext = osp.splitext(out)
    return f'{stem}_{split}{ext or ".npz"}'


def slice_report_path(out: str) -> str:
    return output_stem(out) + '_slices.json'


# ------------------------------------------------------------ the split
class EvalSplit(TrainSplit):
    """The samples of a config's ``val_dataloader`` / ``test_dataloader``
    dataset, as scoring sees them (same identities as the metrics)."""

    def __init__(self, cfg, split: str = 'val',
                 img_prefix: Optional[str] = None, logger=None):
        from mmengine.registry import init_default_scope

        from mmdet3d.registry import DATASETS
        if split not in EVAL_SPLITS:
            raise ScoringError(f'split must be one of {EVAL_SPLITS}, got '
                               f'{split!r} (the training split is scored by '
                               'compute_likelihoods itself)')
        key = f'{split}_dataloader'
        dl = cfg.get(key, None)
        if not dl or 'dataset' not in dl:
            raise ScoringError(f'the config has no {key}.dataset to score')
        ds_cfg = copy.deepcopy(dl['dataset'])
        chain = []
        while _type_name(ds_cfg.get('type', '')) in WRAPPERS:
            chain.append(_type_name(ds_cfg.get('type')))
            ds_cfg = copy.deepcopy(ds_cfg['dataset'])
        self.cfg, self.logger, self.split = cfg, logger, split
        self.wrappers = chain
        self.raw_cfg = copy.deepcopy(ds_cfg)
        self.type = _type_name(ds_cfg.get('type'))
        self.train_pipeline_cfg = copy.deepcopy(ds_cfg.get('pipeline', []))
        ds_cfg['pipeline'] = []
        ann = ds_cfg.get('ann_file', '')
        root = ds_cfg.get('data_root', '') or ''
        ann_path = ann if osp.isabs(ann) or not root else osp.join(root, ann)
        if ann and not osp.isfile(ann_path):
            raise ScoringError(f'{split} annotation file not found: '
                               f'{ann_path} (from {key}.dataset)')
        init_default_scope(cfg.get('default_scope', 'mmdet3d'))
        try:
            self.dataset = DATASETS.build(ds_cfg)
        except Exception as e:
            raise ScoringError(f'cannot build the {split} dataset {self.type}'
                               f' from {ann_path}: {type(e).__name__}: {e}') \
                from e
        if len(self.dataset) == 0:
            raise ScoringError(f'the {split} split ({ann_path}) is empty')
        self.data_root = root
        self.ann_file = ann_path
        self._collect()

    def describe(self) -> Dict:
        return dict(super().describe(), split=self.split)


# ------------------------------------------------------------ applying
def apply_scorers(emb: np.ndarray, scorers: Mapping, aggregation) -> Dict:
    """Score (N, C, D) embeddings with the training scorers, aggregating the
    cameras as the training split was (``aggregation`` record)."""
    n, c, d = emb.shape
    mode = (aggregation or {}).get('mode', 'single')
    if mode in ('single', 'concat', 'mean'):
        if 'embedding' not in scorers:
            raise ScoringError('the scorer file holds per-camera scorers but '
                               f'its aggregation is {mode!r}')
        x = emb[:, 0] if mode == 'single' else (
            emb.reshape(n, c * d) if mode == 'concat' else emb.mean(axis=1))
        if mode == 'single' and c != 1:
            raise ScoringError(f'{c} cameras per sample, the scorer was '
                               'fitted on one')
        return scorers['embedding'].score(x)
    cams = list(aggregation['cameras'])
    if c != len(cams) or set(cams) != set(scorers):
        raise ScoringError(f'embeddings of {c} cameras; the scorer has '
                           f'per-camera scorers {sorted(scorers)}')
    per_cam = OrderedDict((cam, scorers[cam].score(emb[:, i]))
                          for i, cam in enumerate(cams))
    comb = combine_camera_scores(per_cam, aggregation['op'])
    return dict(likelihood=comb['likelihood'], cluster_id=comb['cluster_id'],
                cluster_size=comb['cluster_size'],
                rarest_camera=comb['rarest_camera'],
                per_camera={cam: dict(likelihood=r['likelihood'])
                            for cam, r in per_cam.items()})


def scorer_meta(split: TrainSplit, emb_model, embedder_args: Mapping, cams,
                img_prefix, res: Mapping, likelihood_def, density_k,
                config_path) -> Dict:
    """Provenance saved with the scorers (see :func:`save_scorer`)."""
    from ..utils.likelihood_file import package_versions
    return dict(
        embedder_args=dict(embedder_args),
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


def _embed_rows(split, emb_model, cams, img_prefix, rows) -> np.ndarray:
    """(len(rows), C, D) embeddings of some samples of ``split``."""
    if emb_model.kind == 'image_backbone':
        from .embedders import read_image
        paths = split.image_paths(cams, img_prefix)
        imgs = [read_image(paths[i][c], split.ids[i], cams[c])
                for i in rows for c in range(len(cams))]
        return emb_model.embed_images(imgs).reshape(len(rows), len(cams), -1)
    return emb_model.embed_infos([split.infos[i] for i in rows],
                                 split.dataset)[:, None, :]


def verify_embedder(cfg, emb_model, scorers, meta, img_prefix=None,
                    num: int = 2, rtol: float = 1e-2, logger=None) -> None:
    """Check that ``emb_model`` reproduces the training embeddings: the
    config's training split must be the one the scorer was fitted on, and
    re-embedding its first ``num`` samples must give their saved reduced
    embeddings (relative error below ``rtol``)."""
    split = TrainSplit(cfg, img_prefix=img_prefix, logger=logger)
    if split.fingerprint != meta['fingerprint']:
        raise ScoringError(
            'the config\'s training split is not the one the scorer was '
            f'fitted on (fingerprint {split.fingerprint[:12]} vs '
            f'{meta["fingerprint"][:12]}): give the config used with '
            'compute_likelihoods')
    rows = list(range(min(num, len(split))))
    emb = _embed_rows(split, emb_model, meta['cameras'], img_prefix, rows)
    mode = (meta['aggregation'] or {}).get('mode', 'single')
    checks = []
    if mode in ('single', 'concat', 'mean'):
        n, c, d = emb.shape
        x = emb[:, 0] if mode == 'single' else (
            emb.reshape(n, c * d) if mode == 'concat' else emb.mean(axis=1))
        checks.append(('embedding', x))
    else:
        for i, cam in enumerate(meta['aggregation']['cameras']):
            checks.append((cam, emb[:, i]))
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


def build_split_record(esplit: EvalSplit, res: Mapping, meta: Mapping,
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
    from ..utils.config import ConfigError, load_config
    from ..utils.fileio import check_output_dir
    from ..utils.likelihood_file import save_likelihood_file
    from .pipeline import build_embedder, embed_split, get_logger, write_csv
    logger = logger or get_logger()
    scorers, meta = load_scorer(scorer_file)
    for s in scorers.values():
        s.check_usable()
    outputs = [out, output_stem(out) + '.csv'] + (
        [slice_report_path(out), output_stem(out) + '_slices.png']
        if slice_file else [])
    if not overwrite:
        exists = [p for p in outputs if osp.exists(p)]
        if exists:
            raise FileExistsError(f'output(s) {exists} already exist; pass '
                                  '--overwrite to replace them')
    check_output_dir(osp.dirname(osp.abspath(out)))
    if slice_file:
        from ..evaluation.slice_sources import read_slice_file
        read_slice_file(slice_file)  # fail fast
    try:
        cfg = load_config(config, cfg_options)
    except ConfigError as e:
        raise ScoringError(str(e)) from e
    args = dict(meta['embedder_args'])
    emb_model = build_embedder(args.pop('embedder'), batch_size=batch_size,
                               device=device, logger=logger, **args)
    now = json.loads(json.dumps(emb_model.config(), default=str))
    if now != meta['embedder_config']:
        raise ScoringError(f'the rebuilt embedder {now} differs from the one '
                           f'the scorer was fitted with '
                           f'{meta["embedder_config"]}')
    img_prefix = meta.get('img_prefix')
    if verify:
        verify_embedder(cfg, emb_model, scorers, meta, img_prefix,
                        logger=logger)
    esplit = EvalSplit(cfg, split, img_prefix=img_prefix, logger=logger)
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
    """Validate ``score_splits`` before any work."""
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
