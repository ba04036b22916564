"""The likelihood file: per-sample appearance likelihoods with provenance.

Format (``format = 'mmdet3d_equity.likelihoods'``, ``format_version = 1``),
a pickle written with :func:`mmengine.dump` (``.pkl``) holding a dict:

=================  ============================================================
key                value
=================  ============================================================
format             ``'mmdet3d_equity.likelihoods'``
format_version     ``1``
id_key             info field the ids come from: ``'sample_idx'`` or ``'token'``
sample_ids         list[str], the dataset's own sample identities (unique)
likelihood         float64 array (N,), values in [0, 1], finite
cluster_id         int64 array (N,); noise points get their own unique ids
cluster_size       int64 array (N,), >= 1
fingerprint        :func:`dataset_fingerprint` of ``sample_ids``
dataset            dict: type, data_root, ann_file, split, num_samples
embedder           dict: how embeddings were made (model, checkpoint, ...)
reducer            dict: reducer type + parameters (or None)
clusterer          dict: clusterer type + parameters
likelihood_def     ``'largest'``, ``'fraction'`` or ``'density'``
aggregation        dict or None: how multi-camera samples were combined
versions           dict: package versions
created            ISO-8601 date and time (UTC)
extra              dict, optional free-form provenance
=================  ============================================================

Rows are aligned: row i of every array belongs to ``sample_ids[i]``.
"""
import datetime
import os
import os.path as osp
import tempfile
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from .identity import dataset_fingerprint

FORMAT = 'mmdet3d_equity.likelihoods'
FORMAT_VERSION = 1
LIKELIHOOD_DEFS = ('largest', 'fraction', 'density')
REQUIRED_KEYS = ('format', 'format_version', 'id_key', 'sample_ids',
                 'likelihood', 'cluster_id', 'cluster_size', 'fingerprint',
                 'dataset', 'embedder', 'reducer', 'clusterer',
                 'likelihood_def', 'aggregation', 'versions', 'created')


class LikelihoodFileError(ValueError):
    """A likelihood file that is missing, malformed or does not match."""


def package_versions() -> Dict[str, str]:
    import importlib
    out = {}
    for name in ('mmdet3d_equity', 'torch', 'mmengine', 'mmcv', 'mmdet',
                 'mmdet3d', 'numpy', 'sklearn'):
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except Exception:  # pragma: no cover - optional package missing
            out[name] = 'not installed'
    return out


def atomic_dump(obj, path: str, file_format: Optional[str] = None) -> None:
    """Write ``obj`` with :func:`mmengine.dump` to a temp file, then rename."""
    import mmengine
    directory = osp.dirname(osp.abspath(path)) or '.'
    os.makedirs(directory, exist_ok=True)
    fmt = file_format or osp.splitext(path)[1].lstrip('.')
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.',
                               suffix='.tmp', dir=directory)
    os.close(fd)
    try:
        mmengine.dump(obj, tmp, file_format=fmt)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def build_record(sample_ids: Sequence, likelihood, cluster_id, cluster_size,
                 *, id_key: str, dataset: Mapping, embedder: Mapping,
                 reducer: Optional[Mapping], clusterer: Mapping,
                 likelihood_def: str, aggregation: Optional[Mapping] = None,
                 extra: Optional[Mapping] = None) -> dict:
    """Assemble and validate a likelihood record (see module docstring)."""
    record = dict(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        id_key=id_key,
        sample_ids=[str(s) for s in sample_ids],
        likelihood=np.asarray(likelihood, dtype=np.float64),
        cluster_id=np.asarray(cluster_id, dtype=np.int64),
        cluster_size=np.asarray(cluster_size, dtype=np.int64),
        fingerprint=dataset_fingerprint(sample_ids),
        dataset=dict(dataset),
        embedder=dict(embedder),
        reducer=None if reducer is None else dict(reducer),
        clusterer=dict(clusterer),
        likelihood_def=likelihood_def,
        aggregation=None if aggregation is None else dict(aggregation),
        versions=package_versions(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'),
        extra=dict(extra or {}),
    )
    validate_record(record, source='<new record>')
    return record


def validate_record(record: Mapping, source: str) -> None:
    """Raise :class:`LikelihoodFileError` naming ``source`` and the problem."""
    def fail(msg):
        raise LikelihoodFileError(f'likelihood file {source}: {msg}')

    if not isinstance(record, Mapping):
        fail(f'expected a dict, got {type(record).__name__}; write it with '
             'tools/compute_likelihoods.py')
    if record.get('format') != FORMAT:
        fail(f'not an mmdet3d-equity likelihood file (format='
             f'{record.get("format")!r}); write it with '
             'tools/compute_likelihoods.py')
    if record.get('format_version') != FORMAT_VERSION:
        fail(f'format_version {record.get("format_version")!r} is not '
             f'supported (expected {FORMAT_VERSION}); recompute it with this '
             'version of tools/compute_likelihoods.py')
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        fail(f'missing keys {missing}')
    ids = record['sample_ids']
    n = len(ids)
    if n == 0:
        fail('holds no samples')
    if len(set(ids)) != n:
        fail('sample_ids are not unique')
    for key in ('likelihood', 'cluster_id', 'cluster_size'):
        arr = np.asarray(record[key])
        if arr.shape != (n, ):
            fail(f'{key} has shape {arr.shape}, expected ({n},) to match '
                 'sample_ids')
    lik = np.asarray(record['likelihood'], dtype=np.float64)
    bad = ~np.isfinite(lik)
    if bad.any():
        fail(f'{int(bad.sum())} likelihood(s) are NaN/inf (first sample id: '
             f'{ids[int(np.flatnonzero(bad)[0])]!r}); recompute the file')
    if (lik < 0).any() or (lik > 1).any():
        fail('likelihoods must lie in [0, 1]')
    if (np.asarray(record['cluster_size']) < 1).any():
        fail('cluster_size must be >= 1')
    if record['likelihood_def'] not in LIKELIHOOD_DEFS:
        fail(f'likelihood_def {record["likelihood_def"]!r} is not one of '
             f'{LIKELIHOOD_DEFS}')
    if record['fingerprint'] != dataset_fingerprint(ids):
        fail('fingerprint does not match its own sample_ids (the file was '
             'edited or corrupted); recompute it')


def save_likelihood_file(record: Mapping, path: str,
                         overwrite: bool = False) -> str:
    """Validate and write ``record`` atomically; refuse to overwrite."""
    validate_record(record, source=path)
    if osp.exists(path) and not overwrite:
        raise FileExistsError(
            f'likelihood file {path} already exists; pass overwrite=True '
            '(--overwrite on the command line) to replace it, or choose '
            'another --out')
    atomic_dump(dict(record), path, file_format='pkl')
    return path


def load_likelihood_file(path: str) -> dict:
    """Load and validate a likelihood file."""
    import mmengine
    if not osp.isfile(path):
        raise LikelihoodFileError(
            f'likelihood file {path} not found; create it with '
            '`python tools/compute_likelihoods.py CONFIG --out ' + path + '`')
    try:
        record = mmengine.load(path, file_format='pkl')
    except Exception as e:
        raise LikelihoodFileError(
            f'likelihood file {path} cannot be read ({type(e).__name__}: '
            f'{e}); recompute it with tools/compute_likelihoods.py') from e
    validate_record(record, source=path)
    return record


def likelihood_map(record: Mapping) -> Dict[str, float]:
    """{sample id: likelihood} of a validated record."""
    return dict(zip(record['sample_ids'],
                    np.asarray(record['likelihood'], dtype=np.float64)))
