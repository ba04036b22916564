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
import math
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Optional, Tuple
from ..utils.errors import ResultsError  # noqa: F401

KITTI_DEFAULT_METRIC = '3D_AP40_moderate_strict'
NUS_DEFAULT_METRIC = 'AP'

_KITTI_KEY = re.compile(
    r'^(?P<group>.*)/KITTI/(?P<cls>.+?)_(?P<type>3D|BEV|2D)_AP(?P<n>11|40)_'
    r'(?P<diff>easy|moderate|hard)(?:_(?P<iou>strict|loose))?$')
_KITTI_METRIC = re.compile(
    r'^(?P<type>3D|BEV|2D)_AP(?P<n>11|40)_(?P<diff>easy|moderate|hard)_'
    r'(?P<iou>strict|loose)$')
_NUS_AP_KEY = re.compile(
    r'^(?P<group>.*_NuScenes)/(?P<cls>.+)_AP_dist_(?P<d>[0-9.]+)$')
_NUS_SUMMARY_KEY = re.compile(r'^(?P<group>.*_NuScenes)/(?P<name>mAP|NDS)$')
_NUS_METRIC = re.compile(r'^AP(?:_dist_(?P<d>[0-9.]+))?$')
_TS = re.compile(r'^\d{8}_\d{6}$')

KITTI_EXPECTED = ("KittiMetric keys such as 'Kitti metric/pred_instances_3d/"
                  "KITTI/Car_3D_AP40_moderate_strict'")
NUS_EXPECTED = ("NuScenesMetric keys such as 'NuScenes metric/"
                "pred_instances_3d_NuScenes/car_AP_dist_2.0'")


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
                           f'with {KITTI_EXPECTED} or {NUS_EXPECTED})')
    return f, data


def _number(path, key, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResultsError(f'{path!r}: {key!r} is {value!r}, expected a '
                           'number')
    value = float(value)
    if not math.isfinite(value):
        raise ResultsError(f'{path!r}: {key!r} is {value}, expected a '
                           'finite AP')
    return value


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
    kinds = set()
    for k in metrics:
        _, _, inner = split_view(k)
        if _KITTI_KEY.match(inner):
            kinds.add('kitti')
        elif _NUS_AP_KEY.match(inner) or _NUS_SUMMARY_KEY.match(inner):
            kinds.add('nuscenes')
    return kinds


def resolve_kind(path: str, metrics: Dict, metric: Optional[str],
                 kind: Optional[str] = None) -> Tuple[str, str]:
    """(dataset kind, metric name) for ``metrics``; defaults the metric."""
    kinds = detect_kind(metrics)
    if kind is not None:
        if kind not in kinds:
            raise ResultsError(
                f'{path!r} has no '
                f'{"KITTI" if kind == "kitti" else "nuScenes"} metrics; '
                f'expected '
                f'{KITTI_EXPECTED if kind == "kitti" else NUS_EXPECTED}')
    elif not kinds:
        sample = sorted(metrics)[:5]
        raise ResultsError(
            f'{path!r} has neither KITTI nor nuScenes metrics (keys: '
            f'{sample}{" ..." if len(metrics) > 5 else ""}); expected '
            f'{KITTI_EXPECTED} or {NUS_EXPECTED}')
    elif len(kinds) == 1:
        kind = next(iter(kinds))
    elif metric is not None:
        kind = 'kitti' if _KITTI_METRIC.match(metric) else 'nuscenes'
    else:
        raise ResultsError(
            f'{path!r} holds both KITTI and nuScenes metrics; choose with '
            f'--metric (e.g. {KITTI_DEFAULT_METRIC} or {NUS_DEFAULT_METRIC})')
    if metric is None:
        metric = KITTI_DEFAULT_METRIC if kind == 'kitti' else \
            NUS_DEFAULT_METRIC
    pattern = _KITTI_METRIC if kind == 'kitti' else _NUS_METRIC
    if not pattern.match(metric):
        raise ResultsError(
            f'--metric {metric!r} is not a {kind} metric: expected ' + (
                '<3D|BEV|2D>_AP<11|40>_<easy|moderate|hard>_<strict|loose>, '
                f'e.g. {KITTI_DEFAULT_METRIC}' if kind == 'kitti' else
                "'AP' (per-class AP, mean over the matching distances) or "
                "'AP_dist_<d>' (e.g. AP_dist_2.0)"))
    return kind, metric


def _pick_group(path, groups, preferred, what):
    if len(groups) == 1:
        return next(iter(groups))
    pref = [g for g in groups if g.endswith(preferred)]
    if len(pref) == 1:
        return pref[0]
    raise ResultsError(
        f'{path!r} holds {what} for several results {sorted(groups)}; '
        f'expected one (or one ending in {preferred!r})')


def _kitti_view(path, items, metric):
    m = _KITTI_METRIC.match(metric)
    want = f"{m['type']}_AP{m['n']}_{m['diff']}"
    groups = OrderedDict()
    for k, v in items:
        km = _KITTI_KEY.match(k)
        if km is None:
            continue
        g = groups.setdefault(km['group'], dict(classes=OrderedDict(),
                                                summary=OrderedDict()))
        if f"{km['type']}_AP{km['n']}_{km['diff']}" != want:
            continue
        if km['cls'] == 'Overall':
            # KittiMetric's Overall keys (no suffix) are the strict ones
            if (km['iou'] or 'strict') == m['iou']:
                g['summary']['Overall'] = _number(path, k, v)
        elif km['iou'] == m['iou']:
            g['classes'][km['cls']] = _number(path, k, v)
    if not groups:
        return None
    return groups[_pick_group(path, groups, 'pred_instances_3d',
                              'KITTI metrics')]


def _nus_view(path, items, metric):
    m = _NUS_METRIC.match(metric)
    groups = OrderedDict()
    for k, v in items:
        am = _NUS_AP_KEY.match(k)
        sm = _NUS_SUMMARY_KEY.match(k)
        if am is not None:
            g = groups.setdefault(am['group'], dict(aps=OrderedDict(),
                                                    summary=OrderedDict()))
            g['aps'].setdefault(am['cls'], OrderedDict())[
                float(am['d'])] = _number(path, k, v)
        elif sm is not None:
            g = groups.setdefault(sm['group'], dict(aps=OrderedDict(),
                                                    summary=OrderedDict()))
            g['summary'][sm['name']] = _number(path, k, v)
    if not groups:
        return None
    name = _pick_group(path, groups, 'pred_instances_3d_NuScenes',
                       'nuScenes metrics')
    g = groups[name]
    classes = OrderedDict()
    for cls, by_d in g['aps'].items():
        if m['d'] is None:
            classes[cls] = sum(by_d.values()) / len(by_d)
        else:
            d = float(m['d'])
            if d not in by_d:
                raise ResultsError(
                    f"{path!r}: no '{name}/{cls}_AP_dist_{m['d']}'; the "
                    f'distances there are {sorted(by_d)}')
            classes[cls] = by_d[d]
    summary = OrderedDict((k, g['summary'][k]) for k in ('mAP', 'NDS')
                          if k in g['summary'])
    return dict(classes=classes, summary=summary,
                distances={c: sorted(d) for c, d in g['aps'].items()})


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
        parsed = (_kitti_view if kind == 'kitti' else _nus_view)(
            path, items, metric)
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
    diff = _KITTI_METRIC.match(metric)['diff'] if kind == 'kitti' else None
    for (sl, variant), v in views.items():
        ex = extra.get(sl, {})
        cell = (lambda c: f'{c}_{diff}') if diff else (lambda c: c)
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
            f'{KITTI_EXPECTED if kind == "kitti" else NUS_EXPECTED}')
    return dict(kind=kind, metric=metric, views=views)
