"""The files of a scoring run and their checks (``<stem>`` = the
likelihood file ``out`` without ``.npz``):

* ``out``                  the likelihood file (utils/likelihood_file.py)
* ``<stem>.csv``           sample_id, likelihood, cluster_id, cluster_size,
                           weight (W(p; eta, gamma))
* ``<stem>_summary.json``  counts, cluster sizes, likelihood quantiles
* ``<stem>_figures/``      projection, histogram, weight curve, thumbnails
* ``<stem>_scorer.npz``    the fitted scorer (``save_scorer``)
* ``<stem>_<split>.npz``   another split scored against the fit (+ .csv)
* ``<stem>_slices.json``   the likelihood of each slice (``slice_file``)
* ``<stem>.log``           the command-line tool's log
"""
import csv
import io
import os
import os.path as osp
from typing import Dict, List, Mapping, Optional

import numpy as np

from ..utils.errors import OutputError, OutputExistsError, ScoringError
from ..utils.fileio import atomic_write_text, check_output_dir
from .cameras import cluster_table


def output_stem(out: str) -> str:
    return out[:-4] if out.endswith('.npz') else osp.splitext(out)[0]


def output_paths(out: str) -> Dict[str, str]:
    """Every file a run with likelihood file ``out`` writes (``log``: the
    command-line tool's log)."""
    stem = output_stem(out)
    return dict(record=out, csv=stem + '.csv',
                summary=stem + '_summary.json', figures=stem + '_figures',
                log=stem + '.log')


def scorer_path(out: str) -> str:
    """The scorer file saved with the likelihood file ``out``."""
    return output_stem(out) + '_scorer.npz'


def split_output_path(out: str, split: str) -> str:
    """The likelihood file of ``split`` scored with ``out``'s scorer."""
    stem, ext = osp.splitext(out)
    return f'{stem}_{split}{ext or ".npz"}'


def slice_report_path(out: str) -> str:
    return output_stem(out) + '_slices.json'


def refuse_existing(paths, overwrite: bool) -> None:
    if overwrite:
        return
    exists = [p for p in paths if osp.lexists(p)]
    if exists:
        raise OutputExistsError(
            f'output(s) {exists} already exist; pass --overwrite '
            '(overwrite=True) to replace them, or choose another --out')


def check_outputs(out: str, settings, include_log: bool = False
                  ) -> Dict[str, str]:
    """Before any work: ``out`` names a ``.npz``, its directory (and the
    cache directory) can be written, and no output of ``settings`` exists
    unless ``settings.overwrite``. Raises ScoringError / OutputError /
    OutputExistsError naming the problem; nothing is created but the
    directories. Returns :func:`output_paths`."""
    if not out.endswith('.npz'):
        raise ScoringError(f'--out must end with .npz (likelihood files are '
                           f'NumPy archives), got {out!r}')
    paths = output_paths(out)
    for key in ('record', 'csv', 'summary', 'log'):
        if osp.isdir(paths[key]):  # no --overwrite can replace a directory
            what = '--out' if key == 'record' else f'{key} output'
            raise OutputError(
                f'the {what} path {paths[key]} is an existing directory, '
                'which a file cannot replace; choose another path (or '
                'remove the directory)')
    names = ['record', 'csv', 'summary'] + (['log'] if include_log else [])
    existing: List[str] = [paths[k] for k in names]
    if settings.figures and osp.isdir(paths['figures']) and \
            os.listdir(paths['figures']):
        existing.append(paths['figures'])
    refuse_existing(existing, settings.overwrite)
    check_output_dir(osp.dirname(osp.abspath(out)), 'output')
    if settings.use_cache:
        check_output_dir(settings.cache_dir_for(out), 'embedding cache')
    extra = []
    if settings.save_scorer:
        extra.append(scorer_path(out))
    for s in settings.score_splits:
        extra += [split_output_path(out, s),
                  output_stem(split_output_path(out, s)) + '.csv']
    if settings.slice_file:
        extra.append(slice_report_path(out))
    refuse_existing(extra, settings.overwrite)
    return paths


def get_logger(log_file: Optional[str] = None):
    from mmengine.logging import MMLogger
    name = 'mmdet3d_equity.scoring'
    if MMLogger.check_instance_created(name):
        return MMLogger.get_instance(name)
    return MMLogger.get_instance(name, log_file=log_file, log_level='INFO')


def record_clusters(record: Mapping):
    """:func:`~.cameras.cluster_table` of a training likelihood record."""
    extra = record.get('extra') or {}
    return cluster_table(record['likelihood'], record['cluster_id'],
                         record['cluster_size'], extra.get('per_camera'),
                         extra.get('rarest_camera'))


def summarize(record: Mapping, eta: float, gamma: float) -> Dict:
    """summary.json: counts, the sizes of the samples' clusters (the one
    definition of :mod:`.cameras`), likelihood quantiles and W(p)."""
    from ..models.losses.equity_weight import equity_weight
    lik = np.asarray(record['likelihood'])
    table = record_clusters(record)
    counts = sorted((c['size'] for c in table.values()), reverse=True)
    qs = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    w = equity_weight(lik, eta, gamma)
    agg = record.get('aggregation') or {}
    return dict(
        num_samples=int(len(lik)), num_clusters=int(len(counts)),
        num_singletons=int(sum(c == 1 for c in counts)),
        num_noise=int(record['clusterer'].get('num_noise', 0))
        if isinstance(record['clusterer'], Mapping) else None,
        cluster_sizes=[int(c) for c in counts],
        cluster_definition=(agg.get('cluster_id_rule')
                            or 'the clusters of the samples'),
        likelihood_def=record['likelihood_def'],
        likelihood_quantiles={str(q): float(np.quantile(lik, q)) for q in qs},
        likelihood_mean=float(lik.mean()),
        weight=dict(eta=float(eta), gamma=float(gamma),
                    min=float(w.min()), max=float(w.max()),
                    mean=float(w.mean())),
        fingerprint=record['fingerprint'], created=record['created'])


def write_csv(record: Mapping, path: str, eta: float, gamma: float) -> None:
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
