"""Reading evaluation results: the one parser of the project's metrics JSON.

``tools/test.py`` (MMEngine's test loop) writes every metric of a test run
as one flat JSON object, ``<work-dir>/<timestamp>/<timestamp>.json``. This
module finds and loads that file and turns its keys into typed entries:

* KittiMetric: ``<prefix>/<result>/KITTI/<Class>_<3D|BEV|2D>_AP<11|40>_``
  ``<easy|moderate|hard>[_<strict|loose>]`` (the ``Overall`` keys carry no
  suffix and are the strict thresholds);
* NuScenesMetric: ``<prefix>/<result>_NuScenes/<class>_AP_dist_<d>`` and
  ``.../mAP``, ``.../NDS``;
* slices and AP variants of :class:`~mmdet3d_equity.evaluation.SliceMetric`
  wrap these keys (see :func:`mmdet3d_equity.evaluation.parse_metric_key`).

Metric names used to select values (``--metric`` of the benchmark):
KITTI ``<3D|BEV|2D>_AP<11|40>_<easy|moderate|hard>_<strict|loose>``;
nuScenes ``AP`` (per class, mean over the matching distances) or
``AP_dist_<d>``; per-class rows plus the summary rows (KITTI 'Overall',
nuScenes 'mAP' and 'NDS', and class-frequency groups when present).
"""
import json
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Optional, Tuple

from ..utils.errors import ResultsError  # noqa: F401
from .kitti_slices import KITTI_DEFAULT_METRIC  # noqa: F401
from .nuscenes_slices import NUS_DEFAULT_METRIC  # noqa: F401
from .slice_kinds import metric_number, slice_kinds

_TS = re.compile(r'^\d{8}_\d{6}$')


def _expected(names=None) -> str:
    kinds = slice_kinds()
    return ' or '.join(kinds[n].expected_keys for n in (names or kinds))


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------
def find_metrics_json(path: str) -> str:
    """``path`` itself if it is a file; for a folder the newest metrics JSON
    tools/test.py wrote there (``<dir>/<ts>/<ts>.json`` or ``<dir>/<ts>.json``
    when ``path`` is the timestamp folder)."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise ResultsError(f'results not found: {path!r} (expected a '
                           'metrics JSON written by tools/test.py or its '
                           '--work-dir)')
    candidates = []
    own = osp.join(path, osp.basename(osp.normpath(path)) + '.json')
    if osp.isfile(own):
        candidates.append(own)
    for d in os.listdir(path):
        f = osp.join(path, d, d + '.json')
        if osp.isfile(f):
            candidates.append(f)
    if not candidates:
        raise ResultsError(
            f'no metrics JSON in {path!r}: tools/test.py writes '
            '<work-dir>/<timestamp>/<timestamp>.json (a training work dir '
            'has none; run tools/test.py with --work-dir first)')

    def order(f):
        # mmengine timestamps (YYYYmmdd_HHMMSS) sort by time; others by mtime
        name = osp.splitext(osp.basename(f))[0]
        return (1, name, 0.0) if _TS.match(name) else (0, '', osp.getmtime(f))
    return max(candidates, key=order)


def load_metrics(path: str) -> Tuple[str, Dict]:
    """(file, flat {key: value} dict) of a metrics JSON (file or work dir)."""
    f = find_metrics_json(path)
    try:
        with open(f) as fh:
            text = fh.read()
    except OSError as e:
        raise ResultsError(f'cannot read {f!r}: {e}') from e
    if not text.strip():
        raise ResultsError(f'{f!r} is empty; expected the metrics JSON '
                           'written by tools/test.py')
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultsError(
            f'{f!r} is not a single JSON object ({e}); expected the metrics '
            'JSON written by tools/test.py (<work-dir>/<timestamp>/'
            '<timestamp>.json; vis_data/*.json are training logs)') from e
    if not isinstance(data, dict) or not data:
        raise ResultsError(f'{f!r} holds no metrics (expected a JSON object '
                           f'with {_expected()})')
    return f, data


_number = metric_number


# --------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------
def split_view(key: str) -> Tuple[str, str, str]:
    """(slice, variant, name) of a metrics key (see
    :mod:`~mmdet3d_equity.evaluation.slice_keys`): slice 'all' for the whole
    split, variant 'stock' for the wrapped metric's own values, name without
    the metric's prefix. A malformed slice key is ('', '', key): ignored."""
    from .slice_keys import parse_metric_key
    try:
        p = parse_metric_key(key)
    except ValueError:
        return '', '', key
    return p.slice or 'all', p.variant, p.name


def detect_kind(metrics: Dict) -> set:
    """The names of the dataset kinds whose keys ``metrics`` holds."""
    kinds = slice_kinds()
    found = set()
    for k in metrics:
        _, _, inner = split_view(k)
        for name, cls in kinds.items():
            if cls.matches_key(inner):
                found.add(name)
    return found


def resolve_kind(path: str, metrics: Dict, metric: Optional[str],
                 kind: Optional[str] = None) -> Tuple[str, str]:
    """(dataset kind, metric name) for ``metrics``; defaults the metric."""
    kinds = slice_kinds()
    found = detect_kind(metrics)
    if kind is not None:
        if kind not in found:
            raise ResultsError(
                f'{path!r} has no '
                f'{kinds[kind].label if kind in kinds else kind} metrics; '
                f'expected '
                f'{_expected([kind]) if kind in kinds else _expected()}')
    elif not found:
        sample = sorted(metrics)[:5]
        raise ResultsError(
            f'{path!r} has neither ' + ' nor '.join(
                c.label for c in kinds.values()) +
            f' metrics (keys: {sample}{" ..." if len(metrics) > 5 else ""}'
            f'); expected {_expected()}')
    elif len(found) == 1:
        kind = next(iter(found))
    elif metric is not None:
        matching = [n for n in sorted(found)
                    if kinds[n].matches_metric(metric)]
        kind = matching[0] if matching else sorted(found)[0]
    else:
        raise ResultsError(
            f'{path!r} holds metrics of several dataset kinds '
            f'{sorted(found)}; choose with --metric (e.g. ' + ' or '.join(
                kinds[n].default_metric for n in sorted(found)) + ')')
    cls = kinds[kind]
    if metric is None:
        metric = cls.default_metric
    if not cls.matches_metric(metric):
        raise ResultsError(f'--metric {metric!r} is not a {kind} metric: '
                           f'expected {cls.metric_help}')
    return kind, metric


def metric_views(path: str, metrics: Dict, metric: Optional[str] = None,
                 kind: Optional[str] = None) -> Dict:
    """Every (slice, AP variant) view of one metric of a results dict.

    Returns ``dict(kind, metric, views)`` with ``views[(slice, variant)] =
    dict(classes={cls: value}, summary={name: value}, counts={cls: n},
    num_samples, few=[classes flagged as too small])``; the whole split is
    slice 'all', variants 'stock' (the metric's own AP) and 'dense' (the
    dense AP40 of SliceMetric); counts and flags come from SliceMetric's
    count/few keys where present. A class missing from a view (e.g. a slice
    without ground truth of that class) is absent, never 0.
    """
    kind, metric = resolve_kind(path, metrics, metric, kind)
    cls = slice_kinds()[kind]
    by_view = OrderedDict()
    extra = OrderedDict()  # slice -> variant -> {name: value}
    for k, v in metrics.items():
        sl, variant, inner = split_view(k)
        if variant in ('stock', 'dense'):
            by_view.setdefault((sl, variant), []).append((inner, v))
        elif variant:
            extra.setdefault(sl, OrderedDict()).setdefault(
                variant, OrderedDict())[inner] = v
    views = OrderedDict()
    for view, items in by_view.items():
        parsed = cls.view(path, items, metric)
        if parsed is None:
            continue
        if view[1] == 'stock':
            # class-frequency group means (nuScenes LT3D) as summary rows
            for name, value in (extra.get(view[0], {}).get('group')
                                or {}).items():
                if name.endswith('_mAP'):
                    parsed['summary'][name] = _number(path, name, value)
        if parsed['classes'] or parsed['summary']:
            views[view] = parsed
    # ground-truth counts and small-cell flags of the metric's cells
    cell = cls.count_cell(metric)
    for (sl, variant), v in views.items():
        ex = extra.get(sl, {})
        v['counts'] = OrderedDict(
            (c, ex['count'][cell(c)]) for c in v['classes']
            if cell(c) in (ex.get('count') or {}))
        if 'num_samples' in (ex.get('count') or {}):
            v['num_samples'] = ex['count']['num_samples']
        v['few'] = sorted(c for c in v['classes']
                          if (ex.get('few') or {}).get(cell(c)) == 1.0)
    if ('all', 'stock') not in views:
        raise ResultsError(
            f"{path!r} has no whole-split '{metric}' values; expected "
            f'{_expected([kind])}')
    return dict(kind=kind, metric=metric, views=views)
