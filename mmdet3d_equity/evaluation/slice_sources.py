"""Where slices come from: slice files, nuScenes scene descriptions and
appearance-likelihood bins.

A slice is a named set of sample identities (the KITTI frame number as a
string, the nuScenes sample token: :func:`scoring.sample_identity`). A slice
source yields ``{slice name: set of sample ids}`` plus the names it declares
(a declared slice without samples in the evaluated split is reported as
missing, never dropped silently). Sources are registered in
:data:`SLICE_SOURCES`; a :class:`SliceMetric` config lists them::

    slices=[dict(type='SliceFile', path='data/tiny_kitti/frame_modes.json'),
            dict(type='LikelihoodSlices',
                 path='data/tiny_kitti/equity_likelihoods_val.npz')]

Register your own with ``@SLICE_SOURCES.register_module()``: a class whose
``load()`` returns ``(slices, names)``.

Slice file format (JSON, see docs/slices.md)::

    {"format": "mmdet3d_equity.slices", "format_version": 1,
     "slices": {"<sample id>": "<name>" | ["<name>", ...], ...},
     "names": ["night", "rain", "day"],          (optional)
     "id_key": "token", "source": {...}}         (optional, informational)

The tiny generators' ``frame_modes.json`` (``{"modes": {id: mode}, ...}``)
and a bare ``{id: name | [names]}`` mapping are read as slice files too.
"""
import json
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
from mmengine.registry import Registry

from ..utils.errors import SliceError  # noqa: F401
from .slice_keys import check_slice_name

SLICE_FILE_FORMAT = 'mmdet3d_equity.slices'
SLICE_FILE_VERSION = 1
#: slice sources, by type name (``dict(type=..., **args)`` in a config)
SLICE_SOURCES = Registry('slice source')

Slices = Dict[str, Set[str]]


# ------------------------------------------------------------ slice files
def _as_names(value, sid, source) -> List[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(
            isinstance(n, str) for n in names):
        raise SliceError(
            f'{source}: sample {sid!r} maps to {value!r}; each sample id must '
            'map to a slice name or a non-empty list of slice names')
    for n in names:
        try:
            check_slice_name(n, source)
        except ValueError as e:
            raise SliceError(str(e)) from None
    return list(names)


def parse_slice_mapping(data, source: str) -> Tuple[Slices, List[str]]:
    """Read the JSON object of a slice file (see module docstring); return
    ``({name: ids}, declared names)``."""
    if not isinstance(data, Mapping):
        raise SliceError(f'{source}: a slice file holds a JSON object, got '
                         f'{type(data).__name__}')
    declared: List[str] = []
    if 'slices' in data:
        if data.get('format', SLICE_FILE_FORMAT) != SLICE_FILE_FORMAT:
            raise SliceError(f'{source}: format {data.get("format")!r} is not '
                             f'{SLICE_FILE_FORMAT!r}')
        version = data.get('format_version', SLICE_FILE_VERSION)
        if version != SLICE_FILE_VERSION:
            raise SliceError(f'{source}: format_version {version!r} is not '
                             f'supported (expected {SLICE_FILE_VERSION})')
        mapping = data['slices']
        names = data.get('names') or []
        if not isinstance(names, list) or not all(
                isinstance(n, str) for n in names):
            raise SliceError(f'{source}: "names" must be a list of slice '
                             f'names (strings), got {names!r:.80}')
        declared = list(names)
    elif 'modes' in data and isinstance(data['modes'], Mapping):
        mapping = data['modes']  # the tiny generators' frame_modes.json
    else:
        mapping = data
    if not isinstance(mapping, Mapping) or not mapping:
        raise SliceError(
            f'{source}: no slices found; expected {{"slices": {{sample id: '
            'name or [names]}}}, a frame_modes.json ({"modes": {...}}) or a '
            'bare {sample id: name} mapping')
    slices: Slices = OrderedDict()
    for sid, value in mapping.items():
        for n in _as_names(value, sid, source):
            slices.setdefault(n, set()).add(str(sid))
    for n in declared:
        try:
            check_slice_name(n, source)
        except ValueError as e:
            raise SliceError(str(e)) from None
    names = list(OrderedDict.fromkeys(list(declared) + sorted(slices)))
    for n in names:
        slices.setdefault(n, set())
    return slices, names


def read_slice_file(path: str) -> Tuple[Slices, List[str]]:
    """Load a slice file; return ``({name: set of ids}, names)``."""
    if not osp.isfile(path):
        raise SliceError(f'slice file {path} not found; write one (see '
                         'docs/slices.md) or use the tiny dataset\'s '
                         'frame_modes.json')
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise SliceError(f'slice file {path} is not readable JSON: {e}') \
            from e
    return parse_slice_mapping(data, f'slice file {path}')


def write_slice_file(path: str, assignment: Mapping[str, Sequence[str]],
                     names: Optional[Sequence[str]] = None,
                     id_key: Optional[str] = None,
                     source: Optional[Mapping] = None,
                     overwrite: bool = False) -> str:
    """Write ``{sample id: [slice names]}`` as a slice file (atomic)."""
    from ..utils.fileio import atomic_write_json
    slices = {str(k): list(v) for k, v in assignment.items()}
    parse_slice_mapping(dict(slices=slices, names=list(names or [])),
                        f'slice file {path}')  # validate before writing
    obj = dict(format=SLICE_FILE_FORMAT, format_version=SLICE_FILE_VERSION,
               names=list(names or []), id_key=id_key,
               source=dict(source or {}), slices=slices)
    return atomic_write_json(path, obj, overwrite=overwrite)


@SLICE_SOURCES.register_module()
class SliceFile:
    """Slices from a slice file (or a tiny dataset's frame_modes.json).

    Args:
        path: the JSON file.
        names: report only these slices (default: all in the file).
        prefix: prepended to the file's slice names (to tell sources apart).
    """

    def __init__(self, path: str, names: Optional[Sequence[str]] = None,
                 prefix: str = ''):
        self.path = path
        self.names = None if names is None else list(names)
        self.prefix = str(prefix)

    def load(self) -> Tuple[Slices, List[str]]:
        slices, names = read_slice_file(self.path)
        if self.names is not None:
            unknown = [n for n in self.names if n not in slices]
            if unknown:
                raise SliceError(f'slice file {self.path} has no slice(s) '
                                 f'{unknown}; it has {names}')
            names = list(self.names)
            slices = {n: slices[n] for n in names}
        return _prefixed(slices, names, self.prefix, self.describe())

    def describe(self) -> str:
        return f'slice file {self.path}'


def _prefixed(slices, names, prefix, source):
    if not prefix:
        return slices, names
    out = {}
    for n in names:
        try:
            out[check_slice_name(prefix + n, source)] = slices[n]
        except ValueError as e:
            raise SliceError(str(e)) from None
    return out, [prefix + n for n in names]


# -------------------------------------------------- nuScenes descriptions
#: words looked for in nuScenes scene descriptions (case-insensitive, at the
#: start of a word: 'rain' matches 'Rain', 'raining', not 'train'/'drain')
SCENE_WORDS = ('night', 'rain')


def scene_description_slices(data_root: str, version: str,
                             words: Sequence[str] = SCENE_WORDS,
                             day: bool = True) -> Tuple[Dict[str, List[str]],
                                                        List[str]]:
    """Slices of nuScenes samples from their scene's description.

    A sample is in slice ``w`` (for each ``w`` in ``words``) when its scene's
    description contains a word starting with ``w`` (case-insensitive), and,
    with ``day``, in slice ``'day'`` when it is not in ``'night'``. Reads
    ``<data_root>/<version>/scene.json`` and ``sample.json`` only.

    Returns ``({sample token: [slice names]}, slice names)``.
    """
    names = [check_slice_name(w, 'scene description slices') for w in words]
    if day:
        if 'night' not in names:
            raise SliceError("the 'day' slice is the complement of 'night'; "
                             "include 'night' in words or pass day=False")
        names.append('day')
    tables = {}
    for t in ('scene', 'sample'):
        p = osp.join(data_root, version, f'{t}.json')
        if not osp.isfile(p):
            raise SliceError(f'nuScenes table {p} not found; give the dataset'
                             ' root (data_root) and version (e.g. '
                             'v1.0-trainval, v1.0-mini) of the tables')
        with open(p, encoding='utf-8') as f:
            tables[t] = json.load(f)
    patterns = {w: re.compile(r'\b' + re.escape(w), re.IGNORECASE)
                for w in words}
    scene_slices = {}
    for scene in tables['scene']:
        desc = scene.get('description', '') or ''
        hit = [w for w in words if patterns[w].search(desc)]
        if day and 'night' not in hit:
            hit.append('day')
        scene_slices[scene['token']] = hit
    out = OrderedDict()
    for s in tables['sample']:
        if s['scene_token'] not in scene_slices:
            raise SliceError(f'sample {s["token"]} refers to scene '
                             f'{s["scene_token"]} missing from scene.json')
        hit = scene_slices[s['scene_token']]
        if hit:
            out[s['token']] = list(hit)
    return out, names


def write_scene_description_slice_file(
        data_root: str, version: str, out: str,
        words: Sequence[str] = SCENE_WORDS, day: bool = True,
        overwrite: bool = False) -> Dict[str, int]:
    """Write the slice file of :func:`scene_description_slices` (every
    sample of the version's tables); return the samples per slice."""
    assignment, names = scene_description_slices(data_root, version, words,
                                                 day)
    write_slice_file(out, assignment, names=names, id_key='token',
                     source=dict(kind='nuscenes_scene_descriptions',
                                 data_root=data_root, version=version,
                                 words=list(words), day=bool(day),
                                 rule='a word starting with w in the scene '
                                 'description, case-insensitive; day = not '
                                 'night'),
                     overwrite=overwrite)
    return {n: sum(n in v for v in assignment.values()) for n in names}


@SLICE_SOURCES.register_module()
class SceneDescriptionSlices:
    """nuScenes night / rain / day slices from scene descriptions (see
    :func:`scene_description_slices`).

    Args:
        data_root: nuScenes root (holding ``<version>/scene.json``).
        version: table version, e.g. ``'v1.0-trainval'``, ``'v1.0-mini'``.
        words: description words, one slice each.
        day: add the slice 'day' = not 'night'.
        prefix: prepended to the slice names (e.g. 'scene_').
    """

    def __init__(self, data_root: str, version: str,
                 words: Sequence[str] = SCENE_WORDS, day: bool = True,
                 prefix: str = ''):
        self.data_root, self.version = data_root, version
        self.words, self.day = tuple(words), bool(day)
        self.prefix = str(prefix)

    def load(self) -> Tuple[Slices, List[str]]:
        assignment, names = scene_description_slices(
            self.data_root, self.version, self.words, self.day)
        slices = {n: set() for n in names}
        for sid, hit in assignment.items():
            for n in hit:
                slices[n].add(sid)
        return _prefixed(slices, names, self.prefix, self.describe())

    def describe(self) -> str:
        day = ', day = not night' if self.day else ''
        return (f'scene descriptions of '
                f'{osp.join(self.data_root, self.version)} (words '
                f'{list(self.words)}{day})')


# ---------------------------------------------------- likelihood bins
DEFAULT_THRESHOLDS = (0.25, 0.75)
DEFAULT_BIN_NAMES = ('p_rare', 'p_medium', 'p_common')


def likelihood_bins(likelihood, thresholds=None, quantiles=None
                    ) -> Tuple[np.ndarray, Tuple[float, float]]:
    """Bin index (0 rare, 1 medium, 2 common) of each likelihood p.

    rare: p < t1; medium: t1 <= p < t2; common: p >= t2. The thresholds are
    ``thresholds`` (default :data:`DEFAULT_THRESHOLDS`) or the ``quantiles``
    (q1, q2) of the given likelihoods. Returns (bins, (t1, t2)).
    """
    p = np.asarray(likelihood, dtype=np.float64)
    if p.ndim != 1 or not np.isfinite(p).all():
        raise SliceError('likelihoods must be a finite 1-D array')
    if thresholds is not None and quantiles is not None:
        raise SliceError('give thresholds or quantiles for the likelihood '
                         'bins, not both')
    if quantiles is not None:
        q = tuple(float(x) for x in quantiles)
        if len(q) != 2 or not 0.0 < q[0] < q[1] < 1.0:
            raise SliceError(f'quantiles must be two numbers 0 < q1 < q2 < 1,'
                             f' got {quantiles!r}')
        t = tuple(float(x) for x in np.quantile(p, q))
    else:
        t = tuple(float(x) for x in (DEFAULT_THRESHOLDS if thresholds is None
                                     else thresholds))
        if len(t) != 2 or not 0.0 <= t[0] < t[1] <= 1.0:
            raise SliceError(f'thresholds must be two numbers 0 <= t1 < t2 <= '
                             f'1, got {thresholds!r}')
    bins = np.where(p < t[0], 0, np.where(p < t[1], 1, 2))
    return bins, t


@SLICE_SOURCES.register_module()
class LikelihoodSlices:
    """Rare / medium / common slices by appearance likelihood.

    ``path`` is a likelihood file of the *evaluated* split scored against the
    training clustering (``tools/score_split.py`` or ``compute_likelihoods
    --score-split val``), so p is on the training split's scale. Bins: see
    :func:`likelihood_bins`.

    Args:
        path: likelihood file of the evaluated split.
        thresholds: (t1, t2) on p; default (0.25, 0.75).
        quantiles: (q1, q2) of the file's p values instead of thresholds.
        names: the three slice names (rare, medium, common).
    """

    def __init__(self, path: str, thresholds=None, quantiles=None,
                 names: Sequence[str] = DEFAULT_BIN_NAMES):
        self.path = path
        self.thresholds, self.quantiles = thresholds, quantiles
        if len(tuple(names)) != 3:
            raise SliceError(f'LikelihoodSlices needs 3 names (rare, medium, '
                             f'common), got {names!r}')
        self.names = [check_slice_name(n, 'LikelihoodSlices') for n in names]
        self.used_thresholds = None

    def load(self) -> Tuple[Slices, List[str]]:
        from ..utils.likelihood_file import load_likelihood_file
        record = load_likelihood_file(self.path)
        split = (record.get('dataset') or {}).get('split')
        if split == 'train':
            raise SliceError(
                f'likelihood file {self.path} scores the training split; '
                'likelihood slices need the evaluated split scored against '
                'the training clustering (tools/score_split.py CONFIG '
                '--scorer <train>_scorer.npz --split val --out '
                '<stem>_val.npz, or compute_likelihoods.py --save-scorer '
                '--score-split val)')
        bins, t = likelihood_bins(record['likelihood'], self.thresholds,
                                  self.quantiles)
        self.used_thresholds = t
        slices = {n: set() for n in self.names}
        for sid, b in zip(record['sample_ids'], bins):
            slices[self.names[int(b)]].add(str(sid))
        return slices, list(self.names)

    def describe(self) -> str:
        t = self.used_thresholds
        rule = (f'p < {t[0]:.4g} / < {t[1]:.4g} / >= {t[1]:.4g}'
                if t else 'bins')
        return f'likelihood bins of {self.path} ({rule})'


def build_slice_source(cfg):
    """Build a slice source from ``dict(type=..., **args)``."""
    if not isinstance(cfg, Mapping) or 'type' not in cfg:
        raise SliceError(f'a slice source is a dict with a "type" key, got '
                         f'{cfg!r}')
    args = dict(cfg)
    name = args.pop('type')
    cls = SLICE_SOURCES.get(name) if isinstance(name, str) else name
    if cls is None:
        raise SliceError(f'unknown slice source type {name!r}; registered: '
                         f'{sorted(SLICE_SOURCES.module_dict)}')
    try:
        return cls(**args)
    except TypeError as e:
        raise SliceError(f'bad arguments for slice source {name!r}: {e}') \
            from e
