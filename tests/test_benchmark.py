"""tools/benchmark.py: comparing KittiMetric / NuScenesMetric results
(values, gains, zero-baseline guard, outputs, refusals, errors) and one short
train+test run of a config against itself on tiny KITTI."""
import csv
import importlib.util
import json
import math
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

# Import mmengine (through the plugin) here, not first inside a capsys test:
# mmengine's ProgressBar binds sys.stdout as a default argument at import,
# and capsys' stream is closed after its test.
import mmdet3d_equity.visualization.benchmark_plots  # noqa: F401,E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
KITTI_CFG = 'configs/tiny/pointpillars_tiny-kitti-3class.py'


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'equity_benchmark_tool', osp.join(REPO, 'tools', 'benchmark.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bm = _load_tool()

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


def expected_row(b, e):
    """Independent: absolute gain and relative gain in % (None at b == 0)."""
    return e - b, (None if b == 0 else (e / b - 1.0) * 100.0)


def check_rows(rows, expected):
    assert [r['name'] for r in rows] == list(expected)
    for r in rows:
        b, e = expected[r['name']]
        d, rel = expected_row(b, e)
        assert r['baseline'] == pytest.approx(b, abs=1e-12)
        assert r['equity'] == pytest.approx(e, abs=1e-12)
        assert r['abs_gain'] == pytest.approx(d, abs=1e-9)
        if rel is None:
            assert r['rel_gain_pct'] is None
        else:
            assert r['rel_gain_pct'] == pytest.approx(rel, rel=1e-9)


def read_outputs(out_dir):
    with open(osp.join(out_dir, 'comparison.json')) as f:
        data = json.load(f)
    with open(osp.join(out_dir, 'comparison.csv')) as f:
        rows = list(csv.DictReader(f))
    with open(osp.join(out_dir, 'comparison.png'), 'rb') as f:
        png = f.read()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 1000
    return data, rows


def run_main(args):
    return bm.main([str(a) for a in args])


def error_of(args):
    with pytest.raises(SystemExit) as exc:
        run_main(args)
    return str(exc.value.code)


# --------------------------------------------------------------------------
# mode 1: KITTI
# --------------------------------------------------------------------------
def test_kitti_table_gains_and_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    base, bt = kitti_metrics(rng, zero_class='Cyclist')
    eq, et = kitti_metrics(rng)
    old, _ = kitti_metrics(rng)
    # baseline given as a work dir with an older and a newer test run
    bdir = tmp_path / 'base_test'
    write_run(bdir, '20240101_000000', old)
    write_run(bdir, '20240102_000000', base)
    os.makedirs(bdir / 'not_a_run')
    epath = write_run(tmp_path / 'eq_test', '20240103_000000', eq)
    out = tmp_path / 'cmp'
    result = run_main(['--baseline', bdir, '--equity', epath,
                       '--out-dir', out])
    assert result['dataset'] == 'kitti'
    assert result['metric'] == '3D_AP40_moderate_strict'
    assert result['baseline']['path'].endswith('20240102_000000.json')
    key = ('3D', '40', 'moderate', 'strict')
    check_rows(result['classes'],
               {c: (bt[c][key], et[c][key]) for c in KITTI_CLASSES})
    ov = 'Kitti metric/pred_instances_3d/KITTI/Overall_3D_AP40_moderate'
    check_rows(result['overall'], {'Overall': (base[ov], eq[ov])})
    assert result['classes'][1]['rel_gain_pct'] is None  # Cyclist: base 0

    table = capsys.readouterr().out
    lines = {ln.split()[0]: ln.split() for ln in table.splitlines()
             if ln.split() and ln.split()[0] in KITTI_CLASSES + ['Overall']}
    for c in KITTI_CLASSES:
        b, e = bt[c][key], et[c][key]
        d, rel = expected_row(b, e)
        assert lines[c][1:4] == [f'{b:.2f}', f'{e:.2f}',
                                 ('+' if d >= 0 else '') + f'{d:.2f}']
        assert lines[c][4] == ('n/a' if rel is None else f'{rel:+.2f}%')
    assert lines['Cyclist'][4] == 'n/a'
    for row in lines.values():
        assert not any(t in ' '.join(row).lower() for t in ('inf', 'nan'))

    data, rows = read_outputs(out)
    assert data['classes'] == json.loads(json.dumps(result['classes']))
    assert data['classes'][1]['rel_gain_pct'] is None
    assert [(r['row'], r['name']) for r in rows] == \
        [('class', c) for c in KITTI_CLASSES] + [('overall', 'Overall')]
    for r, ref in zip(rows, result['classes'] + result['overall']):
        assert float(r['baseline']) == ref['baseline']
        assert float(r['equity']) == ref['equity']
        assert float(r['abs_gain']) == pytest.approx(ref['abs_gain'])
        if ref['rel_gain_pct'] is None:
            assert r['rel_gain_pct'] == 'n/a'
        else:
            assert float(r['rel_gain_pct']) == pytest.approx(
                ref['rel_gain_pct'])
    assert not [f for f in os.listdir(out) if f.endswith('.tmp')
                or f.startswith('.')]


def test_kitti_loose_metric_and_default_out_dir(tmp_path):
    rng = np.random.default_rng(1)
    base, bt = kitti_metrics(rng)
    eq, et = kitti_metrics(rng, classes=['Car', 'Pedestrian', 'Van'])
    bpath = write_run(tmp_path / 'b', '20240101_000000', base)
    epath = write_run(tmp_path / 'e', '20240101_000000', eq)
    result = run_main(['--baseline', bpath, '--equity', epath,
                       '--metric', 'BEV_AP11_hard_loose'])
    key = ('BEV', '11', 'hard', 'loose')
    # baseline class order, shared classes only
    check_rows(result['classes'],
               {c: (bt[c][key], et[c][key]) for c in ['Pedestrian', 'Car']})
    # no KittiMetric Overall for loose thresholds (and the class sets differ):
    # the mean of the shared classes
    b_mean = (bt['Pedestrian'][key] + bt['Car'][key]) / 2
    e_mean = (et['Pedestrian'][key] + et['Car'][key]) / 2
    check_rows(result['overall'], {'Overall (mean)': (b_mean, e_mean)})
    assert result['only_in_baseline'] == ['Cyclist', 'Person_sitting']
    assert result['only_in_equity'] == ['Van']
    # default --out-dir: next to the equity metrics JSON
    data, _ = read_outputs(osp.dirname(epath))
    assert data['metric'] == 'BEV_AP11_hard_loose'

    # same classes: a loose metric still gets the mean (KittiMetric's
    # Overall is strict), a strict one KittiMetric's Overall
    eq2, et2 = kitti_metrics(rng)
    epath2 = write_run(tmp_path / 'e2', '20240101_000000', eq2)
    for metric in ('BEV_AP11_hard_loose', 'BEV_AP11_hard_strict'):
        result = run_main(['--baseline', bpath, '--equity', epath2,
                           '--metric', metric, '--out-dir',
                           tmp_path / metric])
        k = ('BEV', '11', 'hard', metric.rsplit('_', 1)[1])
        if metric.endswith('loose'):
            expected = {'Overall (mean)': (
                np.mean([bt[c][k] for c in KITTI_CLASSES]),
                np.mean([et2[c][k] for c in KITTI_CLASSES]))}
        else:
            ov = 'Kitti metric/pred_instances_3d/KITTI/Overall_BEV_AP11_hard'
            expected = {'Overall': (base[ov], eq2[ov])}
        check_rows(result['overall'], expected)


# --------------------------------------------------------------------------
# mode 1: nuScenes
# --------------------------------------------------------------------------
def test_nuscenes_mean_ap_and_single_distance(tmp_path, capsys):
    rng = np.random.default_rng(2)
    base, ba = nus_metrics(rng, zero_class='bus')
    eq, ea = nus_metrics(rng)
    bpath = write_run(tmp_path / 'b', '20240101_000000', base)
    epath = write_run(tmp_path / 'e', '20240101_000000', eq)
    result = run_main(['--baseline', bpath, '--equity', epath,
                       '--out-dir', tmp_path / 'o1'])
    assert result['dataset'] == 'nuscenes' and result['metric'] == 'AP'
    check_rows(result['classes'], {
        c: (sum(ba[c].values()) / 4, sum(ea[c].values()) / 4)
        for c in NUS_CLASSES})
    p = 'NuScenes metric/pred_instances_3d_NuScenes/'
    check_rows(result['overall'], {'mAP': (base[p + 'mAP'], eq[p + 'mAP']),
                                   'NDS': (base[p + 'NDS'], eq[p + 'NDS'])})
    table = capsys.readouterr().out
    bus = [ln for ln in table.splitlines() if ln.startswith('bus')][0]
    assert bus.split()[-1] == 'n/a'
    data, rows = read_outputs(tmp_path / 'o1')
    assert [r['name'] for r in rows] == NUS_CLASSES + ['mAP', 'NDS']
    assert [r['rel_gain_pct'] for r in rows if r['name'] == 'bus'] == ['n/a']

    result = run_main(['--baseline', bpath, '--equity', epath,
                       '--metric', 'AP_dist_2.0', '--out-dir',
                       tmp_path / 'o2'])
    check_rows(result['classes'], {c: (ba[c]['2.0'], ea[c]['2.0'])
                                   for c in NUS_CLASSES})


# --------------------------------------------------------------------------
# refusals and errors
# --------------------------------------------------------------------------
def test_refuses_to_overwrite(tmp_path):
    rng = np.random.default_rng(3)
    bpath = write_run(tmp_path / 'b', '20240101_000000',
                      kitti_metrics(rng)[0])
    epath = write_run(tmp_path / 'e', '20240101_000000',
                      kitti_metrics(rng)[0])
    out = tmp_path / 'o'
    run_main(['--baseline', bpath, '--equity', epath, '--out-dir', out])
    before = {n: open(out / n, 'rb').read() for n in bm.OUTPUT_NAMES}
    # another comparison into the same folder is refused, nothing changes
    msg = error_of(['--baseline', epath, '--equity', bpath, '--out-dir', out])
    assert 'already exist' in msg and '--overwrite' in msg
    assert {n: open(out / n, 'rb').read() for n in bm.OUTPUT_NAMES} == before
    result = run_main(['--baseline', epath, '--equity', bpath, '--out-dir',
                       out, '--overwrite'])
    with open(out / 'comparison.json') as f:
        assert json.load(f)['classes'][0]['baseline'] == \
            result['classes'][0]['baseline']
    assert open(out / 'comparison.json', 'rb').read() != \
        before['comparison.json']


def test_clear_errors_for_bad_inputs(tmp_path):
    rng = np.random.default_rng(4)
    kitti = write_run(tmp_path / 'k', '20240101_000000',
                      kitti_metrics(rng)[0])
    nus = write_run(tmp_path / 'n', '20240101_000000', nus_metrics(rng)[0])
    out = ['--out-dir', tmp_path / 'o']

    empty = tmp_path / 'empty.json'
    empty.write_text('')
    msg = error_of(['--baseline', empty, '--equity', kitti] + out)
    assert str(empty) in msg and 'empty' in msg

    lines = tmp_path / 'scalars.json'
    lines.write_text('{"loss": 1.0, "step": 1}\n{"loss": 0.5, "step": 2}\n')
    msg = error_of(['--baseline', kitti, '--equity', lines] + out)
    assert str(lines) in msg and 'tools/test.py' in msg

    unknown = tmp_path / 'unknown.json'
    unknown.write_text(json.dumps({'coco/bbox_mAP': 0.3, 'time': 0.1}))
    msg = error_of(['--baseline', unknown, '--equity', kitti] + out)
    assert str(unknown) in msg and 'KITTI' in msg and 'nuScenes' in msg
    assert 'Car_3D_AP40_moderate_strict' in msg

    msg = error_of(['--baseline', kitti, '--equity', nus] + out)
    assert nus in msg and 'KITTI' in msg

    other = write_run(tmp_path / 'v', '20240101_000000',
                      kitti_metrics(rng, classes=['Van', 'Truck'])[0])
    msg = error_of(['--baseline', kitti, '--equity', other] + out)
    assert 'no shared classes' in msg and other in msg and 'Van' in msg

    msg = error_of(['--baseline', kitti, '--equity', kitti, '--metric',
                    '3D_AP40_moderate'] + out)
    assert '<strict|loose>' in msg
    msg = error_of(['--baseline', nus, '--equity', nus, '--metric',
                    'AP_dist_3.0'] + out)
    assert 'AP_dist_3.0' in msg and '[0.5, 1.0, 2.0, 4.0]' in msg

    train_dir = tmp_path / 'train_only'
    os.makedirs(train_dir / '20240101_000000' / 'vis_data')
    msg = error_of(['--baseline', train_dir, '--equity', kitti] + out)
    assert str(train_dir) in msg and '<timestamp>.json' in msg
    msg = error_of(['--baseline', tmp_path / 'nope', '--equity', kitti] + out)
    assert 'not found' in msg and 'nope' in msg

    nan = dict(kitti_metrics(rng)[0])
    nan['Kitti metric/pred_instances_3d/KITTI/Car_3D_AP40_moderate_strict'] \
        = float('nan')
    nan_path = write_run(tmp_path / 'nan', '20240101_000000', nan)
    msg = error_of(['--baseline', nan_path, '--equity', kitti] + out)
    assert nan_path in msg and 'Car_3D_AP40_moderate_strict' in msg
    assert not osp.exists(tmp_path / 'o')  # nothing written on errors

    # argument errors (argparse, exit code 2)
    for args in (['--baseline', kitti],
                 ['--baseline', kitti, '--equity', kitti,
                  '--baseline-config', KITTI_CFG],
                 []):
        with pytest.raises(SystemExit) as exc:
            run_main(args)
        assert exc.value.code == 2


def test_relative_gain_guard():
    assert bm.gains(0.0, 5.0) == (5.0, None)
    assert bm.gains(0.0, 0.0) == (0.0, None)
    d, rel = bm.gains(40.0, 50.0)
    assert d == 10.0 and rel == pytest.approx(25.0)
    table = bm.format_table(dict(
        dataset='kitti', metric='m', unit='AP (%)',
        baseline=dict(path='b'), equity=dict(path='e'),
        classes=[dict(name='Car', baseline=0.0, equity=3.0, abs_gain=3.0,
                      rel_gain_pct=None)],
        overall=[], only_in_baseline=[], only_in_equity=[]))
    car = [ln for ln in table.splitlines() if ln.startswith('Car')]
    assert car and car[0].split() == ['Car', '0.00', '3.00', '+3.00', 'n/a']


def test_plot_rejects_inconsistent_rows(tmp_path):
    from mmdet3d_equity.visualization.benchmark_plots import plot_comparison
    with pytest.raises(ValueError, match='2 names but 1 baseline'):
        plot_comparison(['a', 'b'], [1.0], [1.0, 2.0], [None, 1.0],
                        str(tmp_path / 'x.png'))
    with pytest.raises(ValueError, match='non-finite'):
        plot_comparison(['a'], [float('inf')], [1.0], [None],
                        str(tmp_path / 'x.png'))
    assert not osp.exists(tmp_path / 'x.png')


# --------------------------------------------------------------------------
# mode 2: train + test a config against itself (identical seeds)
# --------------------------------------------------------------------------
def test_train_and_compare_tiny_kitti(tiny_kitti_root, tmp_path):
    import torch
    work = tmp_path / 'bench'
    opts = ['train_cfg.max_epochs=1', 'train_dataloader.dataset.dataset.'
            'indices=4', 'train_cfg.val_interval=100', 'train_cfg.val_begin=2']
    cmd = [sys.executable, 'tools/benchmark.py', '--baseline-config',
           KITTI_CFG, '--equity-config', KITTI_CFG, '--work-dir', str(work),
           '--seed', '3', '--jobs', '2', '--out-dir', str(tmp_path / 'cmp'),
           '--cfg-options'] + opts
    env = dict(os.environ, EQUITY_TINY_KITTI=tiny_kitti_root)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = proc.stdout
    for name in ('baseline', 'equity'):
        assert f'[benchmark] {name}: train done' in out
        assert f'[benchmark] {name}: test done' in out
    assert 'randomness.seed=3' in out

    data, rows = read_outputs(tmp_path / 'cmp')
    assert data['dataset'] == 'kitti'
    assert [r['name'] for r in data['classes']] == \
        ['Pedestrian', 'Cyclist', 'Car']
    assert [r['name'] for r in data['overall']] == ['Overall']
    for r in data['classes'] + data['overall']:
        assert 0.0 <= r['baseline'] <= 100.0
        assert math.isfinite(r['equity'])
    # the CPU run is deterministic: same seed, same config -> same weights,
    # same metrics, all gains 0
    ckpts = [torch.load(str(work / n / 'train' / 'epoch_1.pth'),
                        map_location='cpu', weights_only=False)['state_dict']
             for n in ('baseline', 'equity')]
    assert ckpts[0].keys() == ckpts[1].keys()
    assert all(torch.equal(ckpts[0][k], ckpts[1][k]) for k in ckpts[0])
    with open(data['baseline']['path']) as f:
        mb = json.load(f)
    with open(data['equity']['path']) as f:
        me = json.load(f)
    assert {k: v for k, v in mb.items() if k.startswith('Kitti')} == \
        {k: v for k, v in me.items() if k.startswith('Kitti')}
    for r in data['classes'] + data['overall']:
        assert r['abs_gain'] == 0.0
        assert r['rel_gain_pct'] in (0.0, None)
        assert (r['rel_gain_pct'] is None) == (r['baseline'] == 0.0)

    # a second run into the same work dir is refused (nothing retrained)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert 'already exist' in proc.stderr and '--overwrite' in proc.stderr
    assert str(work / 'baseline') in proc.stderr
    assert os.path.isfile(work / 'baseline' / 'train' / 'epoch_1.pth')
