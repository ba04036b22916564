"""Small promises of the benchmark's progress, verdicts and plots: the ETA
counts the parallel jobs, a row without ground truth is 'missing', and the
plots read right (bars from 0, error bars cut at 0, legends outside the
axes, one x scale for every panel of the differences plot); run records
read as a valid record or one RunError whatever their bytes."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmdet3d_equity.benchmark import stats
from mmdet3d_equity.benchmark.report import _delta
from mmdet3d_equity.benchmark.runs import (
    RUN_STATUSES,
    estimate_eta,
    read_run_record,
)
from mmdet3d_equity.utils.errors import RunError


def test_eta_counts_parallel_jobs():
    # 4 runs of 100 s, 2 at a time: when the first two finish, two remain,
    # which run side by side: 100 s more (the old estimate said 300 s)
    assert estimate_eta([100.0, 100.0], [], 2, 2) == pytest.approx(100.0)
    # the first finished while the second ran for 90 s: it ends in 10 s,
    # the 2 pending runs take one slot each -> 100 + 10 - 0 = max(100, 110)
    assert estimate_eta([100.0], [90.0], 2, 2) == pytest.approx(110.0)
    # one slot: the remaining runs one after another
    assert estimate_eta([60.0], [], 3, 1) == pytest.approx(180.0)
    assert estimate_eta([], [10.0], 3, 2) is None
    assert estimate_eta([50.0], [], 0, 4) == 0.0


def test_a_row_without_ground_truth_is_missing_not_within_noise():
    base = {0: 0.0, 1: 0.0, 2: 0.0}
    d = stats.paired_difference(base, dict(base), 0.95, count=0)
    assert (d['ci_low'], d['ci_high']) == (0.0, 0.0)
    assert d['verdict'] == stats.MISSING == 'missing'
    assert _delta(d, 2) == 'missing'
    # the same numbers with ground truth are a measurement
    d = stats.paired_difference(base, dict(base), 0.95, count=5)
    assert d['verdict'] == stats.NOISE
    assert _delta(d, 2) == '+0.00 [+0.00, +0.00] within noise'
    assert stats.paired_difference({0: 1.0}, {0: 2.0}, count=0)[
        'verdict'] == 'missing'


def _row(name, slice_, means, diffs, count=10):
    return dict(slice=slice_, variant='stock', row=name, kind='classes',
                count=count, few=False,
                spread={a: dict(n=2, mean=m, std=s)
                        for a, (m, s) in means.items()},
                diff={a: dict(mean=m, ci_low=lo, ci_high=hi, verdict=v)
                      for a, (m, lo, hi, v) in diffs.items()})


def test_plots_read_right(tmp_path, monkeypatch):
    from mmdet3d_equity.visualization import benchmark_plots as bp
    rows = [
        _row('Car', 'all', {'base': (60.0, 5.0), 'gfl': (1.0, 4.0)},
             {'gfl': (-59.0, -70.0, -48.0, 'worse')}),
        _row('Ped', 'all', {'base': (2.0, 8.0), 'gfl': (None, None)},
             {'gfl': (None, None, None, 'n/a')}),
        _row('Car', 'fog', {'base': (0.0, 0.0), 'gfl': (0.0, 0.0)},
             {'gfl': (0.0, 0.0, 0.0, 'missing')}, count=0),
        _row('Ped', 'fog', {'base': (5.0, 1.0), 'gfl': (6.0, 1.0)},
             {'gfl': (1.0, 0.5, 1.5, 'better')}),
    ]
    analysis = dict(kind='kitti', metric='3D_AP40_moderate_loose',
                    rows=rows, spec=dict(baseline=dict(name='base'),
                                         arms=[dict(name='gfl')],
                                         confidence=0.95))
    figures = {}

    def keep(fig, path, **kwargs):
        assert kwargs.get('bbox_inches') == 'tight'  # labels kept whole
        fig.canvas.draw()
        figures[path.rsplit('/', 1)[-1]] = dict(
            axes=[(ax.get_xlim(), ax.get_ylim(), ax.get_window_extent())
                  for ax in fig.axes],
            legends=[leg.get_window_extent() for leg in fig.legends])
        return path

    monkeypatch.setattr(bp, 'atomic_savefig', keep)
    files = bp.plot_benchmark(analysis, str(tmp_path))
    assert sorted(files) == ['differences_stock.png', 'per_class_stock.png']
    bars = figures['per_class_stock.png']
    for _, ylim, _ in bars['axes']:
        assert ylim[0] == 0  # an AP is read from 0
    legend = bars['legends'][0]
    for _, _, box in bars['axes']:
        assert not legend.overlaps(box)  # the legend covers no bar
    diffs = figures['differences_stock.png']
    xlims = {xlim for xlim, _, _ in diffs['axes']}
    assert len(xlims) == 1  # one x scale for every slice
    lo, hi = xlims.pop()
    assert lo < -70.0 and hi > 1.5  # every interval and 0 inside
    # error bars never reach below 0
    err = bp.bar_errors([2.0, 60.0, np.nan, 0.0], [8.0, 5.0, 1.0, 3.0])
    assert err[0].tolist() == [2.0, 5.0, 0.0, 0.0]
    assert err[1].tolist() == [8.0, 5.0, 1.0, 3.0]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() |
    st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
RECORD_LIKE = st.fixed_dictionaries({}, optional={
    'status': st.sampled_from(RUN_STATUSES + ('todo', '')) | JSON,
    'definition': st.dictionaries(st.text(max_size=6), JSON, max_size=3) |
    JSON,
    'seconds': st.dictionaries(st.text(max_size=6), st.floats(
        allow_nan=False), max_size=2) | JSON,
    'started': JSON})
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(path):
    try:
        rec = read_run_record(str(path))
    except RunError as e:
        assert str(path) in str(e) and '--rerun' in str(e)
        return
    assert isinstance(rec, dict)
    assert rec.get('status', 'done') in RUN_STATUSES
    for key in ('definition', 'seconds'):
        assert rec.get(key) is None or isinstance(rec[key], dict)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_run_record_from_any_bytes(tmp_path, data):
    path = tmp_path / 'run.json'
    path.write_bytes(data)
    _check(path)


@SETTINGS
@given(value=JSON | RECORD_LIKE)
def test_run_record_from_any_json_value(tmp_path, value):
    path = tmp_path / 'run.json'
    path.write_text(json.dumps(value))
    _check(path)


def test_a_deeply_nested_record_is_one_error(tmp_path):
    path = tmp_path / 'run.json'
    path.write_text('[' * 100000 + ']' * 100000)
    _check(path)


def test_every_problem_of_a_spec_is_reported_together():
    from mmdet3d_equity.benchmark.spec import (
        Arm,
        Spec,
        SpecError,
        validate_spec,
    )
    spec = Spec(baseline=Arm('a', config='x.py'),
                arms=[Arm('a', config='x.py',
                          cfg_options={'randomness.seed': 1})],
                seeds=[0, -1], confidence=1.5)
    with pytest.raises(SpecError) as e:
        validate_spec(spec)
    lines = str(e.value).splitlines()
    assert lines[0] == 'the benchmark spec has problems:'
    assert lines[1:] == [
        " - arm names must be unique; repeated: ['a']",
        ' - seeds must be integers >= 0, got -1',
        ' - confidence must lie in (0, 1), got 1.5',
        ' - set seeds with --seeds / seeds=[...], not cfg_options '
        'randomness.seed']
