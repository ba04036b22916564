"""The likelihood file: per-sample appearance likelihoods with provenance.

Format ``'mmdet3d_equity.likelihoods'``, ``format_version`` 2: a NumPy
``.npz`` archive without object arrays, so it is read with
``numpy.load(allow_pickle=False)`` and loading it cannot run code. Members:

================  =============================================================
member            content
================  =============================================================
``sample_ids``    str array (N,): the dataset's own sample identities (unique)
``likelihood``    float64 (N,), values in [0, 1], finite
``cluster_id``    int64 (N,); noise points get their own unique ids
``cluster_size``  int64 (N,), >= 1
``metadata``      0-d str array: a JSON object with the keys below
``array/<k>``     arrays inside the metadata (e.g. ``extra['raw_labels']``),
                  referenced there as ``{"__array__": "array/<k>"}``
================  =============================================================

Metadata (JSON; tuples become lists):

===================  ==========================================================
key                  value
===================  ==========================================================
format               ``'mmdet3d_equity.likelihoods'``
format_version       ``2``
id_key               info field the ids come from: ``'sample_idx'``/``'token'``
fingerprint          :func:`dataset_fingerprint` of ``sample_ids`` (ids only;
                     what ``EquityDataset`` compares with the train dataset)
content_fingerprint  :func:`content_fingerprint`: the (id, p, cluster id,
                     cluster size) rows and the settings that produced them
dataset              dict: type, data_root, ann_file, split, num_samples,
                     samples_fingerprint (see below)
embedder             dict: how embeddings were made (model, checkpoint, ...)
reducer              dict: reducer type + parameters (or None)
clusterer            dict: clusterer type + parameters
likelihood_def       ``'largest'``, ``'fraction'`` or ``'density'``
aggregation          dict or None: how multi-camera samples were combined
versions             dict: package versions
created              ISO-8601 date and time (UTC)
extra                dict: free-form provenance (not fingerprinted)
===================  ==========================================================

Rows are aligned: row i of every array belongs to ``sample_ids[i]``.
:func:`load_likelihood_file` returns a dict with the members and metadata
keys above and checks both fingerprints, so a file whose likelihoods were
edited or shuffled, or whose settings were changed, is refused.

``dataset`` is the sample set the file belongs to: ``data_root`` and
``ann_file`` (the info file) and ``samples_fingerprint``
(:func:`~mmdet3d_equity.utils.identity.samples_fingerprint`: the samples'
point-cloud file sizes), which ``EquityDataset`` compares with the train
dataset, since KITTI-format data always numbers frames from 000000.

Only ``.npz`` files are read: a pickle (what unreleased development
versions wrote) is refused without being unpickled.
"""
import datetime
import errno
import hashlib
import io
import json
import os
import os.path as osp
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from .errors import LikelihoodFileError  # noqa: F401
from .fileio import atomic_write_bytes
from .identity import dataset_fingerprint

INT_KEYS = ('cluster_id', 'cluster_size')

FORMAT = 'mmdet3d_equity.likelihoods'
FORMAT_VERSION = 2
DEFAULT_FILENAME = 'equity_likelihoods.npz'
LIKELIHOOD_DEFS = ('largest', 'fraction', 'density')
ARRAY_KEYS = ('sample_ids', 'likelihood', 'cluster_id', 'cluster_size')
#: the settings covered by the content fingerprint, besides the rows
SETTING_KEYS = ('id_key', 'dataset', 'embedder', 'reducer', 'clusterer',
                'likelihood_def', 'aggregation')
REQUIRED_KEYS = ('format', 'format_version', 'id_key', 'sample_ids',
                 'likelihood', 'cluster_id', 'cluster_size', 'fingerprint',
                 'content_fingerprint', 'dataset', 'embedder', 'reducer',
                 'clusterer', 'likelihood_def', 'aggregation', 'versions',
                 'created')
_ZIP_MAGIC = b'PK\x03\x04'
_ARRAY_REF = '__array__'
_ARRAY_PREFIX = 'array/'


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


# --------------------------------------------------------------- JSON form
def _plain(obj, where: str):
    """``obj`` as JSON types (numpy scalars -> Python, tuples/arrays ->
    lists); refuses what JSON cannot hold, naming where it is."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if not np.isfinite(v):
            raise LikelihoodFileError(
                f'likelihood record: {where} is {v}, which JSON cannot '
                'store; record it as a string or None')
        return v
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise LikelihoodFileError(
                    f'likelihood record: {where} has the key {k!r} of type '
                    f'{type(k).__name__}; metadata keys must be strings')
            out[k] = _plain(v, f'{where}[{k!r}]')
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f'{where}[{i}]') for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise LikelihoodFileError(
                f'likelihood record: {where} is an object array, which only '
                'pickle can store; give a numeric or string array')
        return _plain(obj.tolist(), where)
    raise LikelihoodFileError(
        f'likelihood record: {where} is a {type(obj).__name__}, which a '
        'likelihood file cannot store; give numbers, strings, lists, dicts '
        'or arrays')


def _canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(',', ':'),
                      ensure_ascii=True, allow_nan=False).encode('ascii')


def content_fingerprint(record: Mapping) -> str:
    """sha256 of the record's content: its rows and the settings that made
    them.

    The hashed text is the canonical JSON (sorted keys, ``(',', ':')``
    separators, ASCII, no NaN) of ``{"format": FORMAT, "rows": [[id, p,
    cluster_id, cluster_size], ...] sorted by id, "settings": {k:
    record[k] for k in SETTING_KEYS}}`` with floats written as Python's
    shortest round-trip ``repr`` (exact for float64) and tuples as lists.
    Independent of the row order, like :func:`dataset_fingerprint`; any
    change of a likelihood, a cluster assignment, the pairing of ids and
    likelihoods, or a setting changes it. ``versions``, ``created`` and
    ``extra`` are not covered.
    """
    ids = [str(s) for s in record['sample_ids']]
    lik = np.asarray(record['likelihood'], dtype=np.float64)
    cid = np.asarray(record['cluster_id'], dtype=np.int64)
    size = np.asarray(record['cluster_size'], dtype=np.int64)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    rows = [[ids[i], float(lik[i]), int(cid[i]), int(size[i])]
            for i in order]
    settings = {k: _plain(record.get(k), k) for k in SETTING_KEYS}
    blob = _canonical_json(dict(format=FORMAT, rows=rows, settings=settings))
    return hashlib.sha256(blob).hexdigest()


def _encode(obj, arrays: Dict[str, np.ndarray], where: str):
    """JSON form of the metadata with numeric/string arrays moved out into
    ``arrays`` (exact dtype kept) and referenced by name."""
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        name = f'{_ARRAY_PREFIX}{len(arrays)}'
        arrays[name] = obj
        return {_ARRAY_REF: name}
    if isinstance(obj, Mapping):
        if _ARRAY_REF in obj:
            raise LikelihoodFileError(
                f'likelihood record: {where} uses the reserved key '
                f'{_ARRAY_REF!r}')
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                _plain({k: v}, where)  # raises, naming the key
            out[k] = _encode(v, arrays, f'{where}[{k!r}]')
        return out
    if isinstance(obj, (list, tuple)):
        return [_encode(v, arrays, f'{where}[{i}]')
                for i, v in enumerate(obj)]
    return _plain(obj, where)


def _decode(obj, members: Mapping[str, np.ndarray], source: str):
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY_REF}:
            name = obj[_ARRAY_REF]
            if not isinstance(name, str) or name not in members:
                raise LikelihoodFileError(
                    f'likelihood file {source}: metadata refers to the '
                    f'missing member {name!r}; the file is damaged, '
                    'recompute it')
            return members[name]
        return {k: _decode(v, members, source) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, members, source) for v in obj]
    return obj


# ------------------------------------------------------------------ record
def build_record(sample_ids: Sequence, likelihood, cluster_id, cluster_size,
                 *, id_key: str, dataset: Mapping, embedder: Mapping,
                 reducer: Optional[Mapping], clusterer: Mapping,
                 likelihood_def: str, aggregation: Optional[Mapping] = None,
                 extra: Optional[Mapping] = None) -> dict:
    """Assemble and validate a likelihood record (see module docstring)."""
    columns = dict(cluster_id=cluster_id, cluster_size=cluster_size)
    for key in INT_KEYS:
        columns[key] = _int_column(columns[key], key, '<new record>')
    record = dict(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        id_key=id_key,
        sample_ids=[str(s) for s in sample_ids],
        likelihood=np.asarray(likelihood, dtype=np.float64),
        cluster_id=columns['cluster_id'],
        cluster_size=columns['cluster_size'],
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
    _validate_rows(record, '<new record>')
    record['content_fingerprint'] = content_fingerprint(record)
    validate_record(record, source='<new record>')
    encode_record(record)  # everything can be stored (else: which key)
    return record


def _fail(source: str, msg: str):
    raise LikelihoodFileError(f'likelihood file {source}: {msg}')


def _same(value, expected) -> bool:
    """``value == expected`` for values of any type (arrays included)."""
    return type(value) is type(expected) and value == expected


def _int_column(values, key: str, source: str) -> np.ndarray:
    """``values`` as int64, refusing NaN/inf and fractions by column."""
    arr = np.asarray(values)
    if arr.dtype.kind in 'iub':
        return arr.astype(np.int64)
    try:
        num = arr.astype(np.float64)
    except (TypeError, ValueError):
        _fail(source, f'column {key} holds non-numbers (dtype {arr.dtype}); '
              'it must hold whole numbers, recompute the file with '
              'tools/compute_likelihoods.py')
    bad = ~np.isfinite(num) | (num != np.round(num))
    if bad.any():
        first = num.reshape(-1)[int(np.flatnonzero(bad.reshape(-1))[0])]
        _fail(source, f'column {key} holds {int(bad.sum())} value(s) that '
              f'are not whole numbers (first: {first}); every sample needs '
              f'an integer {key}: recompute the file with '
              'tools/compute_likelihoods.py (noise points get their own '
              'cluster ids)')
    return num.astype(np.int64)


def _validate_rows(record: Mapping, source: str) -> None:
    """The checks that do not need the fingerprints."""
    if not isinstance(record, Mapping):
        _fail(source, f'expected a dict, got {type(record).__name__}; write '
              'it with tools/compute_likelihoods.py')
    if not _same(record.get('format'), FORMAT):
        _fail(source, f'not an mmdet3d-equity likelihood file (format='
              f'{record.get("format")!r}); write it with '
              'tools/compute_likelihoods.py')
    missing = [k for k in REQUIRED_KEYS
               if k not in record and k != 'content_fingerprint']
    if missing:
        _fail(source, f'missing keys {missing}')
    ids = record['sample_ids']
    n = len(ids)
    if n == 0:
        _fail(source, 'holds no samples')
    if len(set(ids)) != n:
        _fail(source, 'sample_ids are not unique')
    for key in ('likelihood', 'cluster_id', 'cluster_size'):
        arr = np.asarray(record[key])
        if arr.shape != (n, ):
            _fail(source, f'{key} has shape {arr.shape}, expected ({n},) to '
                  'match sample_ids')
    for key in INT_KEYS:
        _int_column(record[key], key, source)
    try:
        lik = np.asarray(record['likelihood'], dtype=np.float64)
    except (TypeError, ValueError):
        _fail(source, 'column likelihood holds non-numbers; recompute the '
              'file with tools/compute_likelihoods.py')
    bad = ~np.isfinite(lik)
    if bad.any():
        _fail(source, f'{int(bad.sum())} likelihood(s) are NaN/inf (first '
              f'sample id: {ids[int(np.flatnonzero(bad)[0])]!r}); recompute '
              'the file')
    if (lik < 0).any() or (lik > 1).any():
        _fail(source, 'likelihoods must lie in [0, 1]')
    if (_int_column(record['cluster_size'], 'cluster_size', source)
            < 1).any():
        _fail(source, 'cluster_size must be >= 1')
    if not any(_same(record['likelihood_def'], d) for d in LIKELIHOOD_DEFS):
        _fail(source, f'likelihood_def {record["likelihood_def"]!r} is not '
              f'one of {LIKELIHOOD_DEFS}')


def validate_record(record: Mapping, source: str) -> None:
    """Raise :class:`LikelihoodFileError` naming ``source`` and the problem
    (structure, values, the ids-only fingerprint and the content
    fingerprint)."""
    _validate_rows(record, source)
    if not _same(record.get('format_version'), FORMAT_VERSION):
        _fail(source, f'format_version {record.get("format_version")!r} is '
              f'not supported (expected {FORMAT_VERSION}); recompute it '
              'with this version of tools/compute_likelihoods.py')
    if 'content_fingerprint' not in record:
        _fail(source, "missing keys ['content_fingerprint']")
    if not _same(record['fingerprint'],
                 dataset_fingerprint(record['sample_ids'])):
        _fail(source, 'fingerprint does not match its own sample_ids (the '
              'file was edited or corrupted); recompute it')
    try:
        fingerprint = content_fingerprint(record)
    except LikelihoodFileError as e:
        _fail(source, f'its settings cannot be fingerprinted ({e}); the '
              'file is damaged, recompute it')
    if not _same(record['content_fingerprint'], fingerprint):
        _fail(source, 'content fingerprint does not match the content: the '
              'likelihoods, cluster assignments or settings were changed '
              'after the file was written (or the file is corrupted); '
              'recompute it with tools/compute_likelihoods.py')


# -------------------------------------------------------------- save/load
def encode_record(record: Mapping) -> Dict[str, np.ndarray]:
    """The ``.npz`` members of a validated record (no object arrays)."""
    arrays: Dict[str, np.ndarray] = {}
    meta = {k: v for k, v in record.items() if k not in ARRAY_KEYS}
    meta_json = _encode(meta, arrays, 'record')
    members = dict(
        sample_ids=np.asarray([str(s) for s in record['sample_ids']],
                              dtype=str),
        likelihood=np.asarray(record['likelihood'], dtype=np.float64),
        cluster_id=np.asarray(record['cluster_id'], dtype=np.int64),
        cluster_size=np.asarray(record['cluster_size'], dtype=np.int64),
        metadata=np.asarray(json.dumps(meta_json, sort_keys=True,
                                       allow_nan=False)))
    members.update(arrays)
    return members


def save_likelihood_file(record: Mapping, path: str,
                         overwrite: bool = False) -> str:
    """Validate ``record`` and write it as ``.npz`` atomically, with the
    umask's permissions; refuse to replace an existing file unless
    ``overwrite`` (:class:`mmdet3d_equity.utils.fileio.OutputExistsError`)."""
    validate_record(record, source=path)
    buf = io.BytesIO()
    np.savez(buf, **encode_record(record))
    atomic_write_bytes(path, buf.getvalue(), overwrite=overwrite)
    return path


def _read_npz(path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            members = {k: z[k] for k in z.files}
    except ValueError as e:  # an object array (needs pickle) or bad data
        _fail(path, f'cannot be read without pickle or is damaged ({e}); '
              'recompute it with tools/compute_likelihoods.py')
    except Exception as e:
        _fail(path, f'cannot be read ({type(e).__name__}: {e}); recompute '
              'it with tools/compute_likelihoods.py')
    absent = [k for k in ARRAY_KEYS + ('metadata', ) if k not in members]
    if absent:
        _fail(path, f'not an mmdet3d-equity likelihood file (.npz members '
              f'{absent} missing); write it with tools/compute_likelihoods.py')
    unknown = [k for k in members if k not in ARRAY_KEYS + ('metadata', )
               and not k.startswith(_ARRAY_PREFIX)]
    if unknown:
        _fail(path, f'unexpected .npz members {unknown}; the file was not '
              'written by tools/compute_likelihoods.py, recompute it')
    kinds = dict(sample_ids='U', likelihood='f', cluster_id='iu',
                 cluster_size='iu', metadata='U')
    for k, kind in kinds.items():
        ndim = 0 if k == 'metadata' else 1
        if members[k].dtype.kind not in kind or members[k].ndim != ndim:
            _fail(path, f'member {k!r} has dtype {members[k].dtype} and '
                  f'{members[k].ndim} dimension(s); the file is damaged, '
                  'recompute it with tools/compute_likelihoods.py')
    try:
        meta = json.loads(str(members['metadata'][()]))
        if not isinstance(meta, dict):
            _fail(path, 'its metadata is not a JSON object; the file is '
                  'damaged, recompute it')
        record = _decode(meta, members, path)
    except (ValueError, RecursionError) as e:
        if isinstance(e, LikelihoodFileError):
            raise
        _fail(path, f'its metadata is not valid JSON ({type(e).__name__}: '
              f'{e}); the file is damaged, recompute it')
    record.update(
        sample_ids=[str(s) for s in members['sample_ids'].tolist()],
        likelihood=members['likelihood'].astype(np.float64),
        cluster_id=members['cluster_id'].astype(np.int64),
        cluster_size=members['cluster_size'].astype(np.int64))
    return record


def _check_path(path) -> None:
    """Refuse what is not a readable file, saying what it is instead."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise LikelihoodFileError(
            f'likelihood_file must be the path of a .npz likelihood file, '
            f'got {path!r}')
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            _fail(path, 'is a symbolic link loop (too many levels of '
                  'symbolic links); point likelihood_file at the .npz file '
                  'itself, or fix the link')
        if e.errno == errno.ENOENT and osp.islink(path):
            _fail(path, f'is a symbolic link to {os.readlink(path)}, which '
                  'does not exist; fix the link or point likelihood_file at '
                  'the .npz file')
        if e.errno == errno.ENOENT:
            raise LikelihoodFileError(
                f'likelihood file {path} not found; create it with `python '
                f'tools/compute_likelihoods.py CONFIG --out {path}`') from None
        _fail(path, f'cannot be read ({e.strerror or e}); check its '
              'permissions')
    if osp.isdir(path):
        inside = osp.join(path, DEFAULT_FILENAME)
        hint = (f'; the file inside it is {inside}' if osp.isfile(inside)
                else f' (tools/compute_likelihoods.py writes '
                     f'{DEFAULT_FILENAME} into --work-dir)')
        _fail(path, f'is a directory, not a likelihood file: point '
              f'likelihood_file at the .npz file{hint}')
    if not osp.isfile(path):
        _fail(path, 'is not a regular file (a device, FIFO or socket); '
              'point likelihood_file at the .npz file')


def load_likelihood_file(path: str) -> dict:
    """Load and validate a likelihood file.

    Returns a dict with the keys of the module docstring (members and
    metadata); both fingerprints are checked. Anything else -- another
    file, a pickle (never unpickled), damaged data, edited content -- is
    refused with :class:`LikelihoodFileError` naming the file."""
    _check_path(path)
    try:
        with open(path, 'rb') as f:
            head = f.read(4)
    except OSError as e:
        _fail(path, f'cannot be read ({e.strerror or e}); check its '
              'permissions')
    if head[:1] in (b'\x80', b'(', b'}'):  # pickle protocols 2+ / 0-1
        _fail(path, 'is a pickle, not an .npz likelihood file (pickles, '
              'written by unreleased development versions, can run code '
              'when loaded and are never read); recompute it with '
              '`python tools/compute_likelihoods.py CONFIG --out NEW.npz`')
    if head != _ZIP_MAGIC:
        _fail(path, 'is not a likelihood file (not an .npz archive); write '
              'it with tools/compute_likelihoods.py')
    record = _read_npz(path)
    try:
        validate_record(record, source=path)
    except RecursionError:
        _fail(path, 'its metadata is nested too deeply; the file is '
              'damaged, recompute it')
    return record
