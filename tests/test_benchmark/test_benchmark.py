"""tools/compare_arms.py and mmdet3d_equity.benchmark: reading
metrics, seed statistics against independent computations, reports from
existing per-seed results, preflight refusals before any training, and a
short real train+test benchmark that resumes."""
import csv
import json
import math
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

from mmdet3d_equity.benchmark import stats
from mmdet3d_equity.evaluation.results import (
    ResultsError,
    load_metrics,
    metric_views,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KITTI_CFG = 'configs/tiny/pointpillars_tiny-kitti-3class.py'
from mmdet3d_equity.cli import compare_arms as bm_tool  # noqa: E402

KITTI_CLASSES = ['Pedestrian', 'Cyclist', 'Car', 'Person_sitting']
NUS_CLASSES = ['car', 'truck', 'bus', 'pedestrian', 'traffic_cone']
NUS_DISTS = ['0.5', '1.0', '2.0', '4.0']


# --------------------------------------------------------------------------
# hand-made metrics, in the layout KittiMetric / NuScenesMetric produce
# --------------------------------------------------------------------------
def kitti_metrics(rng, zero_class=None, classes=KITTI_CLASSES):
    """All KittiMetric keys, and table[cls][(type, n, diff, iou)]."""
    p = 'Kitti metric/pred_instances_3d/KITTI/'
    out = {}
    table = {c: {} for c in classes}
    for n in ('11', '40'):
        for iou in ('strict', 'loose'):
            for c in classes:
                for diff in ('easy', 'moderate', 'hard'):
                    for t in ('3D', 'BEV', '2D'):
                        v = 0.0 if c == zero_class else round(
                            float(rng.uniform(1, 95)), 4)
                        table[c][(t, n, diff, iou)] = v
                        out[f'{p}{c}_{t}_AP{n}_{diff}_{iou}'] = v
        for diff in ('easy', 'moderate', 'hard'):
            for t in ('3D', 'BEV', '2D'):
                out[f'{p}Overall_{t}_AP{n}_{diff}'] = round(float(np.mean(
                    [table[c][(t, n, diff, 'strict')] for c in classes])), 4)
    out['data_time'] = 0.01
    out['time'] = 0.2
    return out, table


def nus_metrics(rng, zero_class=None, classes=NUS_CLASSES):
    p = 'NuScenes metric/pred_instances_3d_NuScenes/'
    out = {}
    aps = {}
    for c in classes:
        aps[c] = {}
        for d in NUS_DISTS:
            v = 0.0 if c == zero_class else round(float(rng.uniform(.05, .9)),
                                                  4)
            aps[c][d] = v
            out[f'{p}{c}_AP_dist_{d}'] = v
        for err in ('trans_err', 'scale_err', 'orient_err', 'vel_err',
                    'attr_err'):
            out[f'{p}{c}_{err}'] = round(float(rng.uniform(0, 1)), 4)
    for err in ('mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE'):
        out[f'{p}{err}'] = round(float(rng.uniform(0, 1)), 4)
    out[f'{p}mAP'] = float(np.mean([v for a in aps.values()
                                    for v in a.values()]))
    out[f'{p}NDS'] = round(float(rng.uniform(0.1, 0.6)), 4)
    return out, aps


def write_run(work_dir, ts, metrics):
    """As tools/test.py: <work_dir>/<ts>/<ts>.json."""
    d = osp.join(str(work_dir), ts)
    os.makedirs(d, exist_ok=True)
    path = osp.join(d, ts + '.json')
    with open(path, 'w') as f:
        json.dump(metrics, f)
    return path


def tool_error(capsys, argv):
    """Run tools/compare_arms.py's main; it must exit with status 2 and one
    line ``compare_arms.py: error: ...``; return that message."""
    with pytest.raises(SystemExit) as exc:
        bm_tool.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    # (an earlier test's logger may have left a handler on a closed stream:
    # logging then reports its own error first; not the tool's output)
    at = err.find('compare_arms.py: error: ')
    assert at >= 0, err
    err = err[at:]
    assert 'Traceback' not in err, err
    return err


# --------------------------------------------------------------------------
# reading metrics
# --------------------------------------------------------------------------
def test_kitti_views_pick_the_metric_and_newest_run(tmp_path):
    rng = np.random.default_rng(0)
    old, _ = kitti_metrics(rng)
    new, table = kitti_metrics(rng, zero_class='Cyclist')
    d = tmp_path / 'test'
    write_run(d, '20240101_000000', old)
    write_run(d, '20240102_000000', new)
    os.makedirs(d / 'not_a_run')
    path, metrics = load_metrics(str(d))
    assert path.endswith('20240102_000000.json')
    for metric, key in (('3D_AP40_moderate_strict',
                         ('3D', '40', 'moderate', 'strict')),
                        ('BEV_AP11_hard_loose',
                         ('BEV', '11', 'hard', 'loose'))):
        v = metric_views(path, metrics, metric)
        assert v['kind'] == 'kitti' and v['metric'] == metric
        view = v['views'][('all', 'stock')]
        assert view['classes'] == {c: table[c][key] for c in KITTI_CLASSES}
        # Overall keys carry no suffix and are the strict thresholds only
        if key[3] == 'strict':
            ov = (f'Kitti metric/pred_instances_3d/KITTI/Overall_{key[0]}'
                  f'_AP{key[1]}_{key[2]}')
            assert view['summary'] == {'Overall': new[ov]}
        else:
            assert view['summary'] == {}
    assert metric_views(path, metrics)['metric'] == '3D_AP40_moderate_strict'


def test_slice_views_dense_counts_and_missing_classes(tmp_path):
    from mmdet3d_equity.evaluation import format_metric_key as key
    rng = np.random.default_rng(2)
    whole, table = kitti_metrics(rng)
    m = dict(whole)
    pre, inner = 'Kitti metric', 'pred_instances_3d/KITTI/'
    # slice 'fog': Car and Pedestrian only (no Cyclist ground truth there)
    for c, v, dv, n in (('Car', 40.0, 70.0, 31), ('Pedestrian', 5.0, 50.0,
                                                  4)):
        m[key(pre, 'fog', 'stock', f'{inner}{c}_3D_AP40_moderate_loose')] = v
        m[key(pre, 'fog', 'dense', f'{inner}{c}_3D_AP40_moderate_loose')] = dv
        m[key(pre, 'fog', 'count', f'{c}_moderate')] = n
        m[key(pre, 'fog', 'few', f'{c}_moderate')] = float(n < 10)
    m[key(pre, 'fog', 'count', 'Cyclist_moderate')] = 0
    m[key(pre, 'fog', 'count', 'num_samples')] = 6
    m[key(pre, None, 'dense', f'{inner}Car_3D_AP40_moderate_loose')] = 88.0
    path = write_run(tmp_path, '20240101_000000', m)
    v = metric_views(path, m, '3D_AP40_moderate_loose')['views']
    assert v[('all', 'stock')]['classes']['Car'] == \
        table['Car'][('3D', '40', 'moderate', 'loose')]
    assert v[('all', 'dense')]['classes'] == {'Car': 88.0}
    fog = v[('fog', 'stock')]
    assert fog['classes'] == {'Car': 40.0, 'Pedestrian': 5.0}  # no Cyclist
    assert fog['counts'] == {'Car': 31, 'Pedestrian': 4}
    assert fog['num_samples'] == 6 and fog['few'] == ['Pedestrian']
    assert v[('fog', 'dense')]['classes'] == {'Car': 70.0,
                                              'Pedestrian': 50.0}


def test_nuscenes_views_mean_ap_and_one_distance(tmp_path):
    rng = np.random.default_rng(1)
    m, aps = nus_metrics(rng)
    path = write_run(tmp_path, '20240101_000000', m)
    v = metric_views(path, m)
    assert v['kind'] == 'nuscenes' and v['metric'] == 'AP'
    view = v['views'][('all', 'stock')]
    for c in NUS_CLASSES:
        assert view['classes'][c] == pytest.approx(
            sum(aps[c].values()) / len(NUS_DISTS), abs=1e-12)
    assert set(view['summary']) == {'mAP', 'NDS'}
    v2 = metric_views(path, m, 'AP_dist_2.0')
    assert v2['views'][('all', 'stock')]['classes'] == \
        {c: aps[c]['2.0'] for c in NUS_CLASSES}
    with pytest.raises(ResultsError, match="no '.*car_AP_dist_3.0'"):
        metric_views(path, m, 'AP_dist_3.0')


def test_clear_errors_for_unreadable_results(tmp_path):
    with pytest.raises(ResultsError, match='results not found'):
        load_metrics(str(tmp_path / 'nope'))
    os.makedirs(tmp_path / 'train_only')
    with pytest.raises(ResultsError, match='no metrics JSON in'):
        load_metrics(str(tmp_path / 'train_only'))
    empty = tmp_path / 'e.json'
    empty.write_text('')
    with pytest.raises(ResultsError, match='is empty'):
        load_metrics(str(empty))
    bad = tmp_path / 'b.json'
    bad.write_text('{"a": 1}\n{"b": 2}')
    with pytest.raises(ResultsError, match='not a single JSON object'):
        load_metrics(str(bad))
    path = write_run(tmp_path / 'x', '20240101_000000', {'loss': 1.0})
    with pytest.raises(ResultsError, match='neither KITTI nor nuScenes'):
        metric_views(*load_metrics(path))
    m, _ = kitti_metrics(np.random.default_rng(0))
    path = write_run(tmp_path / 'k', '20240101_000000', m)
    with pytest.raises(ResultsError, match='is not a kitti metric'):
        metric_views(path, m, 'AP')
    m["Kitti metric/pred_instances_3d/KITTI/"
      "Car_3D_AP40_moderate_strict"] = "x"
    with pytest.raises(ResultsError, match="expected a number"):
        metric_views(path, m)


# --------------------------------------------------------------------------
# statistics (independent computations)
# --------------------------------------------------------------------------
T975 = {1: 12.706204736174, 2: 4.302652729749, 3: 3.182446305284,
        4: 2.776445105198}  # Student t quantiles 0.975, tabulated


def test_paired_difference_interval_and_verdicts():
    base = {0: 10.0, 1: 12.0, 2: 11.0, 3: 9.0}
    arm = {0: 13.0, 1: 14.5, 2: 13.0, 3: 12.5, 7: 99.0}  # seed 7 unpaired
    d = np.array([3.0, 2.5, 2.0, 3.5])
    r = stats.paired_difference(base, arm)
    assert r['n'] == 4 and r['seeds'] == [0, 1, 2, 3]
    half = T975[3] * d.std(ddof=1) / math.sqrt(4)
    assert r['mean'] == pytest.approx(d.mean(), abs=1e-12)
    assert r['std'] == pytest.approx(d.std(ddof=1), abs=1e-12)
    assert r['ci_low'] == pytest.approx(d.mean() - half, abs=1e-9)
    assert r['ci_high'] == pytest.approx(d.mean() + half, abs=1e-9)
    assert r['verdict'] == 'better'
    worse = stats.paired_difference(arm, base)
    assert worse['verdict'] == 'worse'
    assert worse['ci_high'] == pytest.approx(-r['ci_low'], abs=1e-9)
    noisy = stats.paired_difference({0: 1.0, 1: 2.0}, {0: 2.0, 1: 1.5})
    assert noisy['verdict'] == 'within noise'
    assert noisy['ci_low'] < 0 < noisy['ci_high']
    one = stats.paired_difference({0: 1.0}, {0: 2.0})
    assert one['mean'] == 1.0 and one['ci_low'] is None
    assert one['verdict'] == 'n/a (needs >= 2 seeds)'
    const = stats.paired_difference({0: 1.0, 1: 2.0}, {0: 1.5, 1: 2.5})
    assert (const['ci_low'], const['ci_high']) == (0.5, 0.5)
    assert const['verdict'] == 'better'
    with pytest.raises(ValueError, match='confidence'):
        stats.paired_difference(base, arm, confidence=1.5)


def test_spread_kish_and_weight_shares():
    s = stats.spread({0: 1.0, 1: 3.0})
    assert s == dict(n=2, mean=2.0, std=pytest.approx(math.sqrt(2)))
    assert stats.spread({}) == dict(n=0, mean=None, std=None)
    assert stats.kish_effective_sample_size(np.ones(8))['ess'] == 8.0
    k = stats.kish_effective_sample_size([1.0, 0.0, 0.0, 0.0])
    assert (k['ess'], k['ratio']) == (1.0, 0.25)
    w = np.array([0.5, 0.5, 1.0, 2.0])
    assert stats.kish_effective_sample_size(w)['ess'] == pytest.approx(
        16.0 / 5.5)
    sh = stats.weight_shares(w, ['day', 'day', 'fog', ['fog', 'x']])
    assert sh['fog']['weight_share'] == pytest.approx(0.75)
    assert sh['fog']['sample_share'] == 0.5
    assert sh['fog']['weight_per_sample_ratio'] == pytest.approx(1.5)
    assert sh['x']['samples'] == 1
    with pytest.raises(ValueError, match='not all 0'):
        stats.kish_effective_sample_size([0.0, 0.0])


# --------------------------------------------------------------------------
# benchmark of existing per-seed results: 3 arms x 2 seeds
# --------------------------------------------------------------------------
def _results_arm(root, name, seeds, shift, rng):
    """<root>/<name>/seed<k>/test/<ts>/<ts>.json with AP = base(seed) +
    shift; returns {seed: table}."""
    tables = {}
    for s in seeds:
        base, table = kitti_metrics(np.random.default_rng(100 + s))
        noise = rng.normal(0, 0.01)
        m = {k: (v + shift + noise if isinstance(v, float) and
                 k.startswith('Kitti') else v) for k, v in base.items()}
        write_run(osp.join(root, name, f'seed{s}', 'test'),
                  '20240101_000000', m)
        tables[s] = m
    return tables


def test_benchmark_of_existing_results_writes_tables_plots_verdicts(
        tmp_path, capsys):
    rng = np.random.default_rng(5)
    root = str(tmp_path / 'runs')
    _results_arm(root, 'base', [0, 1], 0.0, rng)
    _results_arm(root, 'up', [0, 1], 5.0, rng)
    _results_arm(root, 'down', [0, 1], -5.0, rng)
    out = tmp_path / 'report'
    res = bm_tool.main([
        '--baseline', osp.join(root, 'base'), '--arm',
        f"up={osp.join(root, 'up')}", '--arm',
        f"down={osp.join(root, 'down')}", '--out-dir', str(out),
        '--work-dir', str(tmp_path / 'wd'), '--metric',
        '3D_AP40_moderate_strict'])
    assert res['seeds'] == [0, 1]
    rows = {(r['slice'], r['variant'], r['row']): r for r in res['rows']}
    car = rows[('all', 'stock', 'Car')]
    assert car['diff']['up']['verdict'] == 'better'
    assert car['diff']['down']['verdict'] == 'worse'
    assert car['diff']['up']['mean'] == pytest.approx(5.0, abs=0.05)
    for name in ('report.md', 'summary.csv', 'runs.csv', 'benchmark.json',
                 'per_class_stock.png', 'differences_stock.png'):
        assert osp.isfile(out / name), name
    with open(out / 'per_class_stock.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    md = (out / 'report.md').read_text()
    assert '| Car |' in md and 'better' in md and 'worse' in md
    with open(out / 'summary.csv') as f:
        summ = list(csv.DictReader(f))
    up_car = [r for r in summ if r['arm'] == 'up' and r['row'] == 'Car' and
              r['slice'] == 'all']
    assert up_car[0]['verdict'] == 'better'
    with open(out / 'runs.csv') as f:
        raw = list(csv.DictReader(f))
    assert len([r for r in raw if r['row'] == 'Car']) == 3 * 2
    data = json.loads((out / 'benchmark.json').read_text())
    assert data['rows'][0]['diff']['up']['n'] == 2
    # the report is not overwritten without --overwrite
    msg = tool_error(capsys, [
        '--baseline', osp.join(root, 'base'), '--arm',
        f"up={osp.join(root, 'up')}", '--out-dir', str(out)])
    assert 'already exist' in msg and '--overwrite' in msg


def test_results_arm_missing_a_seed_is_named(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = str(tmp_path)
    _results_arm(root, 'base', [0, 1], 0.0, rng)
    _results_arm(root, 'up', [0], 1.0, rng)
    msg = tool_error(capsys, [
        '--baseline', osp.join(root, 'base'), '--arm',
        f"up={osp.join(root, 'up')}", '--seeds', '0', '1', '--out-dir',
        str(tmp_path / 'o')])
    assert 'up/seed1' in msg and 'no metrics JSON for seed 1' in msg


def test_cli_refuses_bad_arguments(tmp_path, capsys):
    for argv, text in (
            ([], 'give --spec FILE, or --baseline'),
            (['--baseline', 'x'], 'at least one --arm'),
            (['--spec', 's.py', '--baseline', 'x', '--arm', 'a=b'],
             'not both')):
        with pytest.raises(SystemExit):
            bm_tool.parse_args(argv)
    capsys.readouterr()
    assert 'not usable as a folder name' in tool_error(
        capsys, ['--baseline', KITTI_CFG, '--arm', 'bad name=x.py'])
    assert 'config arms need --seeds' in tool_error(
        capsys, ['--baseline', KITTI_CFG, '--arm', f'a={KITTI_CFG}'])
    assert 'neither a config file' in tool_error(
        capsys, ['--baseline', KITTI_CFG, '--arm', 'a=nothing_here',
                 '--seeds', '0'])


# --------------------------------------------------------------------------
# preflight and real runs on tiny KITTI
# --------------------------------------------------------------------------
FAST = {'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 100}
FEW = {'train_dataloader.dataset.dataset.indices': 4}  # plain tiny config


def _spec_file(tmp_path, root, arms, name='spec.py',
               metric='3D_AP40_moderate_loose'):
    p = tmp_path / name
    p.write_text(
        f"env = dict(EQUITY_TINY_KITTI={root!r})\n"
        f"seeds = [0, 1]\nmetric = {metric!r}\n"
        f"cfg_options = {FAST!r}\n"
        f"baseline = dict(name='baseline', config={KITTI_CFG!r}, "
        f"cfg_options={FEW!r})\n"
        f"arms = {arms!r}\n")
    return str(p)


def test_broken_third_arm_is_refused_before_any_training(
        tiny_kitti_root, tmp_path, capsys):
    eq = 'configs/tiny/pointpillars_tiny-kitti-3class_equity.py'
    spec = _spec_file(tmp_path, tiny_kitti_root, [
        dict(name='same', config=KITTI_CFG, cfg_options=FEW),
        dict(name='equity', config=eq, cfg_options={
            'train_dataloader.dataset.likelihood_file':
            str(tmp_path / 'missing_likelihoods.npz')})])
    work = tmp_path / 'wd'
    msg = tool_error(capsys, ['--spec', spec, '--work-dir', str(work)])
    assert 'preflight found problems; nothing was trained' in msg
    assert "arm 'equity'" in msg and 'building the train dataset' in msg
    assert 'missing_likelihoods.npz' in msg
    assert "arm 'same'" not in msg
    assert not osp.exists(work / 'baseline')


def test_preflight_reports_every_problem_of_every_arm_and_the_metric(
        tiny_kitti_root, tmp_path, capsys):
    """A misspelt metric used to fail after every training; a broken arm
    hid the next one's problem. Both arms' problems and the metric's come
    in one refusal, before anything trains."""
    spec = _spec_file(tmp_path, tiny_kitti_root, [
        dict(name='typo', config=KITTI_CFG,
             cfg_options={'custom_hooks_typo': 1}),
        dict(name='loss', config=KITTI_CFG,
             cfg_options={'model.type': 'VoxelNett'}),
        dict(name='gpu', config=KITTI_CFG,
             cfg_options={'test_evaluator.metric.type': 'KittiMetric'})],
        metric='3D_AP40_moderat_loose')
    work = tmp_path / 'wd'
    msg = tool_error(capsys, ['--spec', spec, '--work-dir', str(work)])
    lines = msg.splitlines()
    assert lines[0].endswith('preflight found problems; nothing was '
                             'trained:')
    problems = [x for x in lines if x.startswith(' - ')]
    assert any("arm 'baseline'" in x and "--metric '3D_AP40_moderat_loose'"
               " is not a kitti metric" in x for x in problems), problems
    assert any("arm 'typo'" in x and "'custom_hooks_typo' is neither a key"
               in x for x in problems), problems
    assert any("arm 'loss'" in x and "type='VoxelNett' (model) is not "
               'registered' in x for x in problems), problems
    from mmdet3d_equity.evaluation.kitti_cpu_iou import numba_cuda_available
    if not numba_cuda_available():  # what tools/test.py would refuse
        assert any("arm 'gpu'" in x and 'KittiMetric needs numba CUDA'
                   in x and "type='KittiCPUMetric'" in x
                   for x in problems), problems
    assert not osp.exists(work / 'baseline')


def test_an_override_that_would_not_reach_the_runner_is_refused_up_front(
        tmp_path):
    """tools/train.py refuses --cfg-options of a config variable; the
    benchmark's preflight (which loads every arm's config first) makes the
    same check before anything trains."""
    from mmdet3d_equity.benchmark.core import load_arm_config
    from mmdet3d_equity.benchmark.spec import Arm, Spec, SpecError
    eq = 'configs/tiny/pointpillars_tiny-kitti-3class_equity.py'
    arm = Arm('eta', config=eq, cfg_options={'eta': 0.3})
    spec = Spec(baseline=Arm('baseline', config=KITTI_CFG), arms=[arm])
    with pytest.raises(SpecError) as exc:
        load_arm_config(spec, arm)
    msg = str(exc.value)
    assert msg.startswith("arm 'eta': ")
    assert "'eta' is neither a key of this config nor a setting of " \
        "MMEngine's Runner" in msg
    assert '--cfg-options custom_hooks.0.loss.eta=...' in msg
    # the config's own key is accepted
    arm.cfg_options = {'custom_hooks.0.loss.eta': 0.3}
    assert load_arm_config(spec, arm).custom_hooks[0].loss.eta == 0.3


@pytest.mark.slow
def test_train_benchmark_resumes_and_refuses_changed_runs(tiny_kitti_root,
                                                          tmp_path):
    spec = _spec_file(tmp_path, tiny_kitti_root,
                      [dict(name='same', config=KITTI_CFG, cfg_options=FEW)])
    work = tmp_path / 'wd'
    cmd = [sys.executable, 'tools/compare_arms.py', '--spec', spec,
           '--work-dir', str(work), '--jobs', '2', '--seeds', '0']
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '0 of 2 runs already finished (reused); 2 to run' in proc.stdout
    assert 'OMP_NUM_THREADS=1' in proc.stdout
    rec = json.loads((work / 'same' / 'seed0' / 'run.json').read_text())
    assert rec['status'] == 'done' and rec['definition']['seed'] == 0
    data = json.loads((work / 'report' / 'benchmark.json').read_text())
    # same config, same seed, deterministic CPU run: identical metrics
    for r in data['rows']:
        assert r['values']['baseline'] == r['values']['same']
    assert data['cost']['same']['ratio_to_baseline']['n'] == 1
    # a second call (an interrupted benchmark restarted) reuses both runs
    proc = subprocess.run(cmd + ['--overwrite'], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '2 of 2 runs already finished (reused); 0 to run' in proc.stdout
    # a changed definition is refused, not mixed in
    spec2 = _spec_file(tmp_path, tiny_kitti_root, [dict(
        name='same', config=KITTI_CFG,
        cfg_options=dict(FEW, **{'optim_wrapper.optimizer.lr': 0.001}))],
        'spec2.py')
    proc = subprocess.run([sys.executable, 'tools/compare_arms.py', '--spec',
                           spec2, '--work-dir', str(work), '--seeds', '0',
                           '--overwrite'],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert 'holds a run made with another definition' in proc.stderr
    assert 'cfg_options {' in proc.stderr and '--rerun' in \
        proc.stderr


def test_weight_diagnostics_of_an_equity_config(tmp_path):
    from mmengine.config import Config

    from mmdet3d_equity.benchmark.diagnostics import (
        equity_settings,
        weight_diagnostics,
    )
    from mmdet3d_equity.utils.likelihood_file import (
        build_record,
        save_likelihood_file,
    )
    ids = [str(i) for i in range(6)]
    p = np.array([1.0, 1.0, 1.0, 0.5, 0.1, 0.1])
    rec = build_record(ids, p, [0, 0, 0, 1, 2, 2], [3, 3, 3, 1, 2, 2],
                       id_key='sample_idx', dataset=dict(split='train'),
                       embedder=dict(type='test'), reducer=None,
                       clusterer=dict(type='test'), likelihood_def='largest')
    lik = str(tmp_path / 'l.npz')
    save_likelihood_file(rec, lik)
    slices = tmp_path / 'modes.json'
    slices.write_text(json.dumps(dict(modes={
        '0': 'day', '1': 'day', '2': 'day', '3': 'dusk', '4': 'fog',
        '5': 'fog'})))
    eq = dict(type='EquityDataset', likelihood_file=lik, dataset=dict())
    loss = dict(type='GeneralizedFocalLoss', eta=0.5, gamma=2.0)
    hook_cfg = Config(dict(train_dataloader=dict(dataset=eq),
                           custom_hooks=[dict(type='EquityHook', loss=loss)]))
    s = equity_settings(hook_cfg)
    assert s == dict(likelihood_file=lik, eta=0.5, gamma=2.0, mode='loss')
    d = weight_diagnostics(hook_cfg, str(slices))
    w = (0.5 + (1 - p) ** 2) / 1.5  # W(p), computed here independently
    assert d['kish']['ess'] == pytest.approx(w.sum() ** 2 / (w ** 2).sum())
    assert d['slices']['fog']['weight_share'] == pytest.approx(
        w[4:].sum() / w.sum())
    assert d['slices']['fog']['sample_share'] == pytest.approx(2 / 6)
    rs_loss = dict(loss, normalisation='dataset')
    rs_cfg = Config(dict(train_dataloader=dict(dataset=eq, sampler=dict(
        type='EquityWeightedSampler', loss=rs_loss))))
    assert equity_settings(rs_cfg)['mode'] == 'resample'
    assert equity_settings(Config(dict(train_dataloader=dict(
        dataset=dict(type='KittiDataset'))))) is None


def test_config_digest_covers_the_base_chain(tmp_path):
    from mmdet3d_equity.benchmark.runs import config_digest, config_files
    (tmp_path / 'base').mkdir()
    base = tmp_path / 'base' / 'b.py'
    base.write_text('lr = 0.1\n')
    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['base/b.py']\nseed = 0\n")
    assert config_files(str(child)) == [str(child), str(base)]
    before = config_digest(str(child))
    base.write_text('lr = 0.2\n')  # only the base changes
    assert config_digest(str(child)) != before
    # a stock config resolves through mmdet3d's installed configs, bases too
    stock = config_files('mmdet3d::pointpillars/pointpillars_hv_secfpn_'
                         '8xb6-160e_kitti-3d-3class.py')
    assert len(stock) > 1 and all(osp.isfile(p) for p in stock)


def test_a_run_interrupted_while_training_is_trained_again(tmp_path):
    from mmdet3d_equity.benchmark.runs import Run, _Job
    from mmdet3d_equity.benchmark.spec import Arm, Spec
    spec = Spec(baseline=Arm('baseline', config=KITTI_CFG), arms=[])
    run = Run(spec, spec.baseline, 0, str(tmp_path))
    assert _Job(run, {}).steps == ['train', 'test']  # nothing yet
    for status, steps in (('training', ['train', 'test']),
                          ('trained', ['test'])):
        run._write(status)
        assert _Job(run, {}).steps == steps, status


def test_the_committed_spec_file_loads_with_every_arm():
    from mmdet3d_equity.benchmark.core import load_arm_config
    from mmdet3d_equity.benchmark.spec import load_spec_file
    spec = load_spec_file(osp.join(REPO, 'configs', 'benchmarks',
                                   'tiny-kitti_baseline-vs-gfl.py'))
    assert [a.name for a in spec.all_arms] == ['baseline', 'gfl', 'gfl_norm',
                                               'gfl_eta0.3']
    cfgs = {a.name: load_arm_config(spec, a) for a in spec.all_arms}
    assert cfgs['gfl_norm'].custom_hooks[0].loss.normalisation == 'dataset'
    assert cfgs['gfl_eta0.3'].custom_hooks[0].loss.eta == 0.3
    assert not cfgs['baseline'].get('custom_hooks')
