"""Compare a baseline run and an equity run: per-class AP, gains, plot.

Compare existing results (the metrics JSON that tools/test.py writes as
``<work-dir>/<timestamp>/<timestamp>.json``, or a work dir holding them: the
newest is used)::

    python tools/benchmark.py --baseline RESULTS --equity RESULTS
        [--metric M] [--out-dir DIR] [--overwrite]

Train and evaluate both, then compare::

    python tools/benchmark.py --baseline-config CFG --equity-config CFG
        [--work-dir DIR] [--cfg-options k=v ...] [--seed N] [--jobs 1|2]
        [--metric M] [--out-dir DIR] [--overwrite]

Writes comparison.json, comparison.csv and comparison.png into --out-dir
(default: the folder of the equity metrics JSON). See docs/benchmark.md.
"""
import argparse
import csv
import io
import json
import math
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import time
from collections import OrderedDict

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

FORMAT = 'mmdet3d-equity-benchmark'
FORMAT_VERSION = 1
OUTPUT_NAMES = ('comparison.json', 'comparison.csv', 'comparison.png')
KITTI_DEFAULT_METRIC = '3D_AP40_moderate_strict'
NUS_DEFAULT_METRIC = 'AP'

# <prefix>/<result name>/KITTI/<Class>_<3D|BEV|2D>_AP<11|40>_<difficulty>
# [_<strict|loose>]; the Overall entries have no strict/loose suffix (they
# are the strict thresholds).
_KITTI_KEY = re.compile(
    r'^(?P<group>.*)/KITTI/(?P<cls>.+?)_(?P<type>3D|BEV|2D)_AP(?P<n>11|40)_'
    r'(?P<diff>easy|moderate|hard)(?:_(?P<iou>strict|loose))?$')
_KITTI_METRIC = re.compile(
    r'^(?P<type>3D|BEV|2D)_AP(?P<n>11|40)_(?P<diff>easy|moderate|hard)_'
    r'(?P<iou>strict|loose)$')
# <prefix>/<result name>_NuScenes/<class>_AP_dist_<d>, .../mAP, .../NDS
_NUS_AP_KEY = re.compile(
    r'^(?P<group>.*_NuScenes)/(?P<cls>.+)_AP_dist_(?P<d>[0-9.]+)$')
_NUS_SUMMARY_KEY = re.compile(r'^(?P<group>.*_NuScenes)/(?P<name>mAP|NDS)$')
_NUS_METRIC = re.compile(r'^AP(?:_dist_(?P<d>[0-9.]+))?$')

KITTI_EXPECTED = ("KittiMetric keys such as 'Kitti metric/pred_instances_3d/"
                  "KITTI/Car_3D_AP40_moderate_strict'")
NUS_EXPECTED = ("NuScenesMetric keys such as 'NuScenes metric/"
                "pred_instances_3d_NuScenes/car_AP_dist_2.0'")


class BenchmarkError(ValueError):
    """Unusable input or option, with what was expected."""


# --------------------------------------------------------------------------
# Reading metrics
# --------------------------------------------------------------------------
_TS = re.compile(r'^\d{8}_\d{6}$')


def find_metrics_json(path):
    """``path`` itself if it is a file; for a folder the newest metrics JSON
    tools/test.py wrote there (``<dir>/<ts>/<ts>.json`` or ``<dir>/<ts>.json``
    when ``path`` is the timestamp folder)."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise BenchmarkError(f'results not found: {path!r} (expected a '
                             f'metrics JSON written by tools/test.py or its '
                             f'--work-dir)')
    candidates = []
    own = osp.join(path, osp.basename(osp.normpath(path)) + '.json')
    if osp.isfile(own):
        candidates.append(own)
    for d in os.listdir(path):
        f = osp.join(path, d, d + '.json')
        if osp.isfile(f):
            candidates.append(f)
    if not candidates:
        raise BenchmarkError(
            f'no metrics JSON in {path!r}: tools/test.py writes '
            f'<work-dir>/<timestamp>/<timestamp>.json (a training work dir '
            f'has none; run tools/test.py with --work-dir first)')

    def order(f):
        # mmengine timestamps (YYYYmmdd_HHMMSS) sort by time; others by mtime
        name = osp.splitext(osp.basename(f))[0]
        return (1, name, 0.0) if _TS.match(name) else (0, '', osp.getmtime(f))
    return max(candidates, key=order)


def load_metrics(path):
    """The flat {key: value} dict of a metrics JSON (file or work dir)."""
    f = find_metrics_json(path)
    try:
        with open(f) as fh:
            text = fh.read()
    except OSError as e:
        raise BenchmarkError(f'cannot read {f!r}: {e}') from e
    if not text.strip():
        raise BenchmarkError(f'{f!r} is empty; expected the metrics JSON '
                             f'written by tools/test.py')
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BenchmarkError(
            f'{f!r} is not a single JSON object ({e}); expected the metrics '
            f'JSON written by tools/test.py (<work-dir>/<timestamp>/'
            f'<timestamp>.json; vis_data/*.json are training logs)') from e
    if not isinstance(data, dict) or not data:
        raise BenchmarkError(f'{f!r} holds no metrics (expected a JSON object '
                             f'with {KITTI_EXPECTED} or {NUS_EXPECTED})')
    return f, data


def _number(path, key, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BenchmarkError(f'{path!r}: {key!r} is {value!r}, expected a '
                             f'number')
    value = float(value)
    if not math.isfinite(value):
        raise BenchmarkError(f'{path!r}: {key!r} is {value}, expected a '
                             f'finite AP')
    return value


def _pick_group(path, groups, preferred, what):
    if len(groups) == 1:
        return next(iter(groups))
    pref = [g for g in groups if g.endswith(preferred)]
    if len(pref) == 1:
        return pref[0]
    raise BenchmarkError(
        f'{path!r} holds {what} for several results {sorted(groups)}; '
        f'expected one (or one ending in {preferred!r})')


def detect_kind(path, metrics):
    kinds = set()
    for k in metrics:
        if _KITTI_KEY.match(k):
            kinds.add('kitti')
        elif _NUS_AP_KEY.match(k) or _NUS_SUMMARY_KEY.match(k):
            kinds.add('nuscenes')
    return kinds


def parse_kitti(path, metrics, metric):
    """Per-class values and overall rows of one KITTI metric."""
    m = _KITTI_METRIC.match(metric)
    if m is None:
        raise BenchmarkError(
            f'--metric {metric!r} is not a KITTI metric: expected '
            f'<3D|BEV|2D>_AP<11|40>_<easy|moderate|hard>_<strict|loose>, '
            f'e.g. {KITTI_DEFAULT_METRIC}')
    want = f"{m['type']}_AP{m['n']}_{m['diff']}"
    groups = {}
    for k, v in metrics.items():
        km = _KITTI_KEY.match(k)
        if km is None:
            continue
        g = groups.setdefault(km['group'], dict(classes=OrderedDict(),
                                                overall=None, any=False))
        g['any'] = True
        if f"{km['type']}_AP{km['n']}_{km['diff']}" != want:
            continue
        if km['cls'] == 'Overall':
            # KittiMetric's Overall keys (no suffix) are the strict ones
            if (km['iou'] or 'strict') == m['iou']:
                g['overall'] = (k, _number(path, k, v))
        elif km['iou'] == m['iou']:
            g['classes'][km['cls']] = _number(path, k, v)
    if not groups:
        raise BenchmarkError(f'{path!r} has no KITTI metrics; expected '
                             f'{KITTI_EXPECTED}')
    name = _pick_group(path, groups, 'pred_instances_3d', 'KITTI metrics')
    g = groups[name]
    if not g['classes']:
        raise BenchmarkError(
            f"{path!r} has no per-class '{metric}' values under "
            f"'{name}/KITTI/'; expected keys '{name}/KITTI/<Class>_"
            f"{metric}' (metrics there: e.g. "
            f'{_example_keys(metrics, _KITTI_KEY)})')
    overall = {}
    if g['overall'] is not None:
        overall['Overall'] = g['overall'][1]
    return dict(group=name, classes=g['classes'], overall=overall)


def parse_nuscenes(path, metrics, metric):
    m = _NUS_METRIC.match(metric)
    if m is None:
        raise BenchmarkError(
            f"--metric {metric!r} is not a nuScenes metric: expected 'AP' "
            f"(per-class AP, mean over the matching distances) or "
            f"'AP_dist_<d>' (e.g. AP_dist_2.0)")
    groups = {}
    for k, v in metrics.items():
        am = _NUS_AP_KEY.match(k)
        sm = _NUS_SUMMARY_KEY.match(k)
        if am is not None:
            g = groups.setdefault(am['group'], dict(aps=OrderedDict(),
                                                    summary={}))
            g['aps'].setdefault(am['cls'], OrderedDict())[
                float(am['d'])] = _number(path, k, v)
        elif sm is not None:
            g = groups.setdefault(sm['group'], dict(aps=OrderedDict(),
                                                    summary={}))
            g['summary'][sm['name']] = _number(path, k, v)
    if not groups:
        raise BenchmarkError(f'{path!r} has no nuScenes metrics; expected '
                             f'{NUS_EXPECTED}')
    name = _pick_group(path, groups, 'pred_instances_3d_NuScenes',
                       'nuScenes metrics')
    g = groups[name]
    if not g['aps']:
        raise BenchmarkError(
            f"{path!r} has no per-class AP under '{name}/'; expected keys "
            f"'{name}/<class>_AP_dist_<d>'")
    classes = OrderedDict()
    for cls, by_d in g['aps'].items():
        if m['d'] is None:
            classes[cls] = sum(by_d.values()) / len(by_d)
        else:
            d = float(m['d'])
            if d not in by_d:
                raise BenchmarkError(
                    f"{path!r}: no '{name}/{cls}_AP_dist_{m['d']}'; the "
                    f'distances there are {sorted(by_d)}')
            classes[cls] = by_d[d]
    distances = {cls: sorted(by_d) for cls, by_d in g['aps'].items()}
    overall = OrderedDict((k, g['summary'][k]) for k in ('mAP', 'NDS')
                          if k in g['summary'])
    return dict(group=name, classes=classes, overall=overall,
                distances=distances)


def _example_keys(metrics, pattern, n=3):
    keys = [k for k in metrics if pattern.match(k)][:n]
    return keys or 'none'


def parse_results(path, metrics, metric=None, kind=None):
    """(kind, metric, parsed) for one metrics dict."""
    from mmdet3d_equity.evaluation.slice_keys import whole_split_metrics
    metrics = whole_split_metrics(metrics)  # SliceMetric's slices aside
    kinds = detect_kind(path, metrics)
    if kind is not None:
        if kind not in kinds:
            raise BenchmarkError(
                f'{path!r} has no '
                f'{"KITTI" if kind == "kitti" else "nuScenes"} metrics; '
                f'expected '
                f'{KITTI_EXPECTED if kind == "kitti" else NUS_EXPECTED}')
    elif not kinds:
        sample = sorted(metrics)[:5]
        raise BenchmarkError(
            f'{path!r} has neither KITTI nor nuScenes metrics (keys: '
            f'{sample}{" ..." if len(metrics) > 5 else ""}); expected '
            f'{KITTI_EXPECTED} or {NUS_EXPECTED}')
    elif len(kinds) == 1:
        kind = next(iter(kinds))
    elif metric is not None:
        kind = 'kitti' if _KITTI_METRIC.match(metric) else 'nuscenes'
    else:
        raise BenchmarkError(
            f'{path!r} holds both KITTI and nuScenes metrics; choose with '
            f'--metric (e.g. {KITTI_DEFAULT_METRIC} or {NUS_DEFAULT_METRIC})')
    if kind == 'kitti':
        metric = metric or KITTI_DEFAULT_METRIC
        return kind, metric, parse_kitti(path, metrics, metric)
    metric = metric or NUS_DEFAULT_METRIC
    return kind, metric, parse_nuscenes(path, metrics, metric)


# --------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------
def gains(base, eq):
    """(absolute gain, relative gain in % or None when baseline is 0)."""
    diff = eq - base
    rel = None if base == 0 else 100.0 * diff / base
    return diff, rel


def _row(name, base, eq, **extra):
    diff, rel = gains(base, eq)
    return OrderedDict(name=name, baseline=base, equity=eq, abs_gain=diff,
                       rel_gain_pct=rel, **extra)


def compare(baseline, equity, metric=None):
    """Compare two metrics dicts given as (path, metrics) pairs."""
    b_path, b_metrics = baseline
    e_path, e_metrics = equity
    kind, metric, b = parse_results(b_path, b_metrics, metric)
    _, _, e = parse_results(e_path, e_metrics, metric, kind=kind)
    shared = [c for c in b['classes'] if c in e['classes']]
    if not shared:
        raise BenchmarkError(
            f'no shared classes: {b_path!r} has {list(b["classes"])}, '
            f'{e_path!r} has {list(e["classes"])} (expected results of the '
            f'same classes)')
    if kind == 'nuscenes' and metric == 'AP':
        for c in shared:
            if b['distances'][c] != e['distances'][c]:
                raise BenchmarkError(
                    f'class {c!r}: {b_path!r} has AP at distances '
                    f'{b["distances"][c]}, {e_path!r} at '
                    f'{e["distances"][c]}; the means would not compare')
    classes = [_row(c, b['classes'][c], e['classes'][c]) for c in shared]
    overall = []
    if kind == 'kitti':
        if 'Overall' in b['overall'] and 'Overall' in e['overall'] and \
                list(b['classes']) == list(e['classes']):
            overall.append(_row('Overall', b['overall']['Overall'],
                                e['overall']['Overall'],
                                source='KittiMetric Overall'))
        else:
            n = len(shared)
            overall.append(_row(
                'Overall (mean)',
                sum(b['classes'][c] for c in shared) / n,
                sum(e['classes'][c] for c in shared) / n,
                source='mean over the shared classes'))
    else:
        for k in ('mAP', 'NDS'):
            if k in b['overall'] and k in e['overall']:
                overall.append(_row(k, b['overall'][k], e['overall'][k],
                                    source='NuScenesMetric'))
    return OrderedDict(
        format=FORMAT, format_version=FORMAT_VERSION, dataset=kind,
        metric=metric,
        unit='AP (%)' if kind == 'kitti' else 'AP (0-1)',
        baseline=OrderedDict(path=osp.abspath(b_path), result=b['group']),
        equity=OrderedDict(path=osp.abspath(e_path), result=e['group']),
        classes=classes, overall=overall,
        only_in_baseline=[c for c in b['classes'] if c not in e['classes']],
        only_in_equity=[c for c in e['classes'] if c not in b['classes']])


def _fmt(v, kind):
    return f'{v:.2f}' if kind == 'kitti' else f'{v:.4f}'


def _fmt_rel(rel):
    return 'n/a' if rel is None else f'{rel:+.2f}%'


def format_table(result):
    kind = result['dataset']
    rows = [('class', 'baseline', 'equity', 'abs gain', 'rel gain')]
    for r in result['classes'] + result['overall']:
        rows.append((r['name'], _fmt(r['baseline'], kind),
                     _fmt(r['equity'], kind),
                     ('+' if r['abs_gain'] >= 0 else '') +
                     _fmt(r['abs_gain'], kind), _fmt_rel(r['rel_gain_pct'])))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]

    def line(r):
        return '  '.join([r[0].ljust(widths[0])] +
                         [c.rjust(w) for c, w in zip(r[1:], widths[1:])])
    sep = '-' * len(line(rows[0]))
    out = [f'{result["dataset"]} {result["metric"]} '
           f'[{result["unit"]}]',
           f'baseline: {result["baseline"]["path"]}',
           f'equity:   {result["equity"]["path"]}', sep, line(rows[0]), sep]
    n = len(result['classes'])
    out += [line(r) for r in rows[1:n + 1]]
    if result['overall']:
        out.append(sep)
        out += [line(r) for r in rows[n + 1:]]
    out.append(sep)
    for r in result['overall']:
        out.append(f'{r["name"]}: {r["source"]}')
    if result['only_in_baseline']:
        out.append(f'only in baseline (not compared): '
                   f'{", ".join(result["only_in_baseline"])}')
    if result['only_in_equity']:
        out.append(f'only in equity (not compared): '
                   f'{", ".join(result["only_in_equity"])}')
    return '\n'.join(out)


def to_csv(result):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(['row', 'name', 'baseline', 'equity', 'abs_gain',
                'rel_gain_pct'])
    for kind, rows in (('class', result['classes']),
                       ('overall', result['overall'])):
        for r in rows:
            w.writerow([kind, r['name'], repr(r['baseline']),
                        repr(r['equity']), repr(r['abs_gain']),
                        'n/a' if r['rel_gain_pct'] is None
                        else repr(r['rel_gain_pct'])])
    return buf.getvalue()


def output_paths(out_dir):
    return [osp.join(out_dir, n) for n in OUTPUT_NAMES]


def check_outputs_free(out_dir, overwrite):
    existing = [p for p in output_paths(out_dir) if osp.exists(p)]
    if existing and not overwrite:
        raise BenchmarkError(
            f'{", ".join(existing)} already exist; pass --overwrite to '
            f'replace them or choose another --out-dir')


def write_outputs(result, out_dir, overwrite=False):
    """comparison.json / .csv / .png into out_dir, each written atomically."""
    check_outputs_free(out_dir, overwrite)
    from mmdet3d_equity.scoring.likelihood_file import atomic_dump
    from mmdet3d_equity.semantic_scale.report import atomic_write_bytes
    from mmdet3d_equity.visualization.benchmark_plots import plot_comparison
    json_path, csv_path, png_path = output_paths(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    rows = result['classes'] + result['overall']
    plot_comparison(
        [r['name'] for r in rows], [r['baseline'] for r in rows],
        [r['equity'] for r in rows], [r['rel_gain_pct'] for r in rows],
        png_path, n_classes=len(result['classes']),
        ylabel=f'{result["metric"]} '
        f'({"%" if result["dataset"] == "kitti" else "0-1"})',
        title=f'{result["dataset"]} {result["metric"]}: baseline vs equity')
    atomic_write_bytes(csv_path, to_csv(result).encode('utf-8'))
    atomic_dump(dict(result), json_path, file_format='json')
    return dict(json=json_path, csv=csv_path, png=png_path)


# --------------------------------------------------------------------------
# Mode 2: train and test both
# --------------------------------------------------------------------------
def _log(msg):
    print(f'[benchmark] {msg}', flush=True)


class _Pipeline:
    """train then test of one config, subprocesses with output in a log."""

    def __init__(self, name, config, run_dir, cfg_options, seed):
        self.name = name
        self.config = config
        self.run_dir = run_dir
        self.train_dir = osp.join(run_dir, 'train')
        self.test_dir = osp.join(run_dir, 'test')
        self.log_path = osp.join(run_dir, 'benchmark.log')
        self.options = list(cfg_options) + [f'randomness.seed={seed}']
        self.step = None
        self.proc = None
        self.log = None
        self.t0 = None
        self.env = None

    def _start(self, step):
        py = sys.executable
        if step == 'train':
            cmd = [py, osp.join(ROOT, 'tools', 'train.py'), self.config,
                   '--work-dir', self.train_dir, '--cfg-options'] + \
                self.options
        else:
            ckpt = self.checkpoint()
            cmd = [py, osp.join(ROOT, 'tools', 'test.py'), self.config, ckpt,
                   '--work-dir', self.test_dir, '--cfg-options'] + \
                self.options
        self.step = step
        self.t0 = time.time()
        _log(f'{self.name}: {step} ... (log: {self.log_path})')
        _log(f'{self.name}: $ ' + ' '.join(cmd))
        self.log.write(f'$ {" ".join(cmd)}\n')
        self.log.flush()
        self.proc = subprocess.Popen(cmd, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env)

    def checkpoint(self):
        marker = osp.join(self.train_dir, 'last_checkpoint')
        if not osp.isfile(marker):
            raise BenchmarkError(
                f'{self.name}: tools/train.py wrote no checkpoint '
                f'({marker} missing; see {self.log_path})')
        with open(marker) as f:
            ckpt = f.read().strip()
        if not osp.isabs(ckpt):
            ckpt = osp.join(os.getcwd(), ckpt)
        if not osp.isfile(ckpt):
            raise BenchmarkError(f'{self.name}: checkpoint {ckpt!r} named in '
                                 f'{marker} does not exist')
        return ckpt

    def start(self):
        os.makedirs(self.run_dir, exist_ok=True)
        self.log = open(self.log_path, 'w')
        self._start('train')

    def poll(self):
        """None while running, True when done; raises on failure."""
        rc = self.proc.poll()
        if rc is None:
            return None
        dt = time.time() - self.t0
        if rc != 0:
            self.log.close()
            with open(self.log_path, errors='replace') as f:
                tail = f.read().splitlines()[-30:]
            raise BenchmarkError(
                f'{self.name}: tools/{self.step}.py failed (exit {rc}) after '
                f'{dt:.0f} s; last lines of {self.log_path}:\n' +
                '\n'.join(tail))
        _log(f'{self.name}: {self.step} done in {dt:.0f} s')
        if self.step == 'train':
            self._start('test')
            return None
        self.log.close()
        return True

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.log is not None and not self.log.closed:
            self.log.close()


def run_both(args):
    """Train + test baseline and equity; returns their metrics JSON paths."""
    work_dir = osp.abspath(args.work_dir)
    for opt in args.cfg_options or []:
        if opt.split('=', 1)[0].strip() == 'randomness.seed':
            raise BenchmarkError('set the seed with --seed, not '
                                 '--cfg-options randomness.seed=...')
    for cfg in (args.baseline_config, args.equity_config):
        if '::' not in cfg and not osp.isfile(cfg):
            raise BenchmarkError(f'config file not found: {cfg!r}')
    runs = [osp.join(work_dir, n) for n in ('baseline', 'equity')]
    existing = [d for d in runs if osp.exists(d)]
    if existing and not args.overwrite:
        raise BenchmarkError(
            f'{", ".join(existing)} already exist; pass --overwrite to '
            f'retrain (they are deleted first), another --work-dir, or '
            f'compare the existing results with --baseline '
            f'{osp.join(runs[0], "test")} --equity '
            f'{osp.join(runs[1], "test")}')
    if args.out_dir is not None:
        check_outputs_free(args.out_dir, args.overwrite)
    for d in existing:
        shutil.rmtree(d)
    pipes = [_Pipeline('baseline', args.baseline_config, runs[0],
                       args.cfg_options or [], args.seed),
             _Pipeline('equity', args.equity_config, runs[1],
                       args.cfg_options or [], args.seed)]
    env = dict(os.environ)
    if args.jobs > 1 and 'OMP_NUM_THREADS' not in env:
        # two runs at once: share the cores instead of oversubscribing them
        env['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 1) //
                                         args.jobs))
    for p in pipes:
        p.env = env
    _log(f'work dir {work_dir}, seed {args.seed}, '
         f'{"both at once" if args.jobs > 1 else "one after the other"}')
    t0 = time.time()
    try:
        pending = list(pipes)
        active = []
        while pending or active:
            while pending and len(active) < args.jobs:
                p = pending.pop(0)
                p.start()
                active.append(p)
            time.sleep(0.2)
            for p in list(active):
                if p.poll():
                    active.remove(p)
    except BaseException:
        for p in pipes:
            p.kill()
        raise
    _log(f'training and testing done in {time.time() - t0:.0f} s')
    return [find_metrics_json(p.test_dir) for p in pipes]


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Compare a baseline and an equity run (per-class AP).')
    p.add_argument('--baseline', help='baseline metrics JSON (tools/test.py) '
                   'or its work dir (the newest JSON is used)')
    p.add_argument('--equity', help='equity metrics JSON or its work dir')
    p.add_argument('--baseline-config', help='train + test this config as '
                   'the baseline')
    p.add_argument('--equity-config', help='train + test this config as the '
                   'equity run')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'benchmark'),
                   help='with the configs: runs go to WORK_DIR/baseline and '
                   'WORK_DIR/equity (default work_dirs/benchmark)')
    p.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE',
                   help='with the configs: options for both configs, given '
                   'to tools/train.py and tools/test.py')
    p.add_argument('--seed', type=int, default=0,
                   help='with the configs: randomness.seed of both runs '
                   '(default 0)')
    p.add_argument('--jobs', type=int, choices=[1, 2], default=1,
                   help='with the configs: 2 runs baseline and equity at '
                   'the same time (default 1: one after the other)')
    p.add_argument('--metric', help=f'KITTI: <3D|BEV|2D>_AP<11|40>_<easy|'
                   f'moderate|hard>_<strict|loose> (default '
                   f'{KITTI_DEFAULT_METRIC}); nuScenes: AP (mean over '
                   f'distances, default) or AP_dist_<d>')
    p.add_argument('--out-dir', help='where comparison.json/.csv/.png go '
                   '(default: the folder of the equity metrics JSON)')
    p.add_argument('--overwrite', action='store_true',
                   help='replace existing comparison files and, with the '
                   'configs, existing runs in the work dir')
    args = p.parse_args(argv)
    results = args.baseline is not None or args.equity is not None
    configs = args.baseline_config is not None or \
        args.equity_config is not None
    if results and configs:
        p.error('give either --baseline/--equity (compare results) or '
                '--baseline-config/--equity-config (train and test), not both')
    if results and (args.baseline is None or args.equity is None):
        p.error('comparing results needs both --baseline and --equity')
    if configs and (args.baseline_config is None or
                    args.equity_config is None):
        p.error('training needs both --baseline-config and --equity-config')
    if not results and not configs:
        p.error('give --baseline and --equity (metrics JSONs or tools/test.py '
                'work dirs), or --baseline-config and --equity-config')
    args.mode = 'results' if results else 'configs'
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.mode == 'results':
            if args.out_dir is not None:
                check_outputs_free(args.out_dir, args.overwrite)
            b_path, e_path = args.baseline, args.equity
        else:
            b_path, e_path = run_both(args)
        baseline = load_metrics(b_path)
        equity = load_metrics(e_path)
        result = compare(baseline, equity, args.metric)
        out_dir = args.out_dir or osp.dirname(osp.abspath(equity[0]))
        print(format_table(result), flush=True)
        files = write_outputs(result, out_dir, args.overwrite)
    except BenchmarkError as e:
        sys.exit(f'benchmark.py: error: {e}')
    _log('wrote ' + ', '.join(files.values()))
    return result


if __name__ == '__main__':
    main()
