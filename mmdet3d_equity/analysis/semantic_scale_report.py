"""Semantic-scale report helpers: evaluation-result parsing, correlations.
(Files are written with :mod:`mmdet3d_equity.utils.fileio`.)"""
import json
import os
import re
from typing import Dict, Optional, Sequence

import numpy as np

from ..utils.errors import EvalResultError  # noqa: F401


def _load_json_any(path: str) -> dict:
    with open(path, encoding='utf-8') as f:
        text = f.read()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        # JSON lines (e.g. vis_data/scalars.json): take the last line that
        # holds per-class metrics
        obj = None
        for line in text.splitlines()[::-1]:
            line = line.strip()
            if line:
                try:
                    obj = json.loads(line)
                    break
                except json.JSONDecodeError as e:
                    raise EvalResultError(
                        f'{path}: neither JSON nor JSON lines ({e})') from e
    if not isinstance(obj, dict):
        raise EvalResultError(f'{path}: expected a JSON object, got '
                              f'{type(obj).__name__}')
    return obj


def load_per_class_ap(path: str, class_names: Sequence[str],
                      ap_key: Optional[str] = None,
                      metric: Optional[str] = None) -> Dict[str, float]:
    """Per-class AP from an evaluation result file.

    Accepted formats (first match wins):

    1. ``{class_name: AP}`` with every class of the dataset;
    2. with ``ap_key`` (a regular expression containing ``{cls}``, matched
       with ``re.search``; several matching keys are averaged): any flat
       JSON object;
    3. the metrics JSON mmengine writes after ``tools/test.py``, read by the
       project's one metrics parser
       (:func:`mmdet3d_equity.evaluation.results.metric_views`): the whole
       split's stock values of ``metric`` (default KITTI
       ``3D_AP40_moderate_strict``, nuScenes ``AP``: the mean over the
       matching distances); SliceMetric's per-slice and dense keys are not
       mixed in.
    """
    from ..evaluation.results import ResultsError, metric_views
    if not os.path.isfile(path):
        raise EvalResultError(f'evaluation result file not found: {path!r}')
    obj = _load_json_any(path)
    names = list(class_names)
    if all(n in obj for n in names):
        try:
            return {n: float(obj[n]) for n in names}
        except (TypeError, ValueError) as e:
            raise EvalResultError(f'{path}: per-class values must be '
                                  f'numbers ({e})') from e
    if ap_key:
        if '{cls}' not in ap_key:
            raise EvalResultError(f'--ap-key must contain {{cls}}, got '
                                  f'{ap_key!r}')
        out = {}
        for n in names:
            rx = re.compile(ap_key.replace('{cls}', re.escape(n)))
            vals = [float(v) for k, v in obj.items() if rx.search(k)
                    and isinstance(v, (int, float))]
            if vals:
                out[n] = float(np.mean(vals))
        missing = [n for n in names if n not in out]
        if missing:
            raise EvalResultError(
                f'{path}: --ap-key {ap_key!r} matches no key of the classes '
                f'{missing}; cannot find a per-class AP for every class '
                f'{names}')
        return out
    try:
        view = metric_views(path, obj, metric)['views'][('all', 'stock')]
    except ResultsError as e:
        raise EvalResultError(
            f'{e}. Give a JSON {{"<class>": AP, ...}}, the metrics JSON of '
            f'tools/test.py (KITTI/nuScenes keys), or --ap-key with a '
            f'regular expression containing {{cls}}') from e
    missing = [n for n in names if n not in view['classes']]
    if missing:
        raise EvalResultError(
            f'{path}: cannot find a per-class AP for every class {names}: '
            f'the metrics have none for {missing} (classes there: '
            f'{sorted(view["classes"])})')
    return {n: float(view['classes'][n]) for n in names}


def pearson(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Pearson correlation (None when undefined: < 3 points or constant;
    :func:`pearson_undefined` says which)."""
    if pearson_undefined(x, y) is not None:
        return None
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.corrcoef(x, y)[0, 1])


def pearson_undefined(x: Sequence[float], y: Sequence[float],
                      x_name: str = 'x', y_name: str = 'y'
                      ) -> Optional[str]:
    """Why the Pearson correlation of ``x`` and ``y`` is undefined (None
    when it is defined): fewer than 3 points, a value that is not finite,
    or one side the same for every point (no variation to correlate)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 3:
        return (f'{x.size} class(es): a correlation needs at least 3 '
                'classes')
    for name, v in ((x_name, x), (y_name, y)):
        if not np.isfinite(v).all():
            return f'{name} is not finite for every class'
    for name, v in ((x_name, x), (y_name, y)):
        if np.std(v) == 0:
            hint = (' (e.g. a checkpoint that detects nothing, or the '
                    'metrics of another split)' if name == 'per-class AP'
                    else '')
            return (f'{name} is {float(v[0]):g} for every class: no '
                    f'variation to correlate{hint}')
    return None
