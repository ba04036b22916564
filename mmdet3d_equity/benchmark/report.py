"""Writing a benchmark's report: Markdown, CSV, JSON and plots.

Files in the output directory (each written atomically; existing ones are
only replaced with ``overwrite``):

* ``report.md``        primary endpoints, then per slice and AP variant the
                       mean +- std over seeds of every arm and the paired
                       difference of every method arm to the baseline with
                       its confidence interval and verdict; training cost;
                       sample-weight diagnostics.
* ``summary.csv``      one line per (slice, variant, row, arm): n, mean, std,
                       and for method arms the difference, interval, p,
                       verdict.
* ``runs.csv``         one line per (slice, variant, row, arm, seed): the
                       value of every run (the raw data).
* ``benchmark.json``   all of the above and the spec.
* ``per_class_<variant>.png``  per slice, per class bars (mean over seeds,
                       error bars: std) of every arm.
* ``differences_<variant>.png`` per slice, per row the paired difference of
                       each method arm to the baseline with its interval.
"""
import csv
import glob
import io
import os.path as osp
from collections import OrderedDict
from typing import Dict, List

from ..utils.fileio import (
    OutputExistsError,
    atomic_write_json,
    atomic_write_text,
)
from .stats import fmt

REPORT_FILES = ('report.md', 'summary.csv', 'runs.csv', 'benchmark.json')


def check_report_free(out_dir: str, overwrite: bool) -> None:
    from mmdet3d_equity.visualization.benchmark_plots import PLOT_PATTERNS
    existing = [osp.join(out_dir, n) for n in REPORT_FILES
                if osp.exists(osp.join(out_dir, n))]
    for pattern in PLOT_PATTERNS:
        existing += sorted(glob.glob(osp.join(out_dir, pattern)))
    if existing and not overwrite:
        raise OutputExistsError(
            f'{", ".join(existing)} already exist; pass --overwrite to '
            'replace them or choose another --out-dir')


def _views(rows) -> List:
    seen = OrderedDict()
    for r in rows:
        seen.setdefault((r['slice'], r['variant']), None)
    return list(seen)


def _arms(analysis) -> List[str]:
    spec = analysis['spec']
    return [spec['baseline']['name']] + [a['name'] for a in spec['arms']]


def _pm(sp: Dict, digits: int) -> str:
    if not sp or sp.get('mean') is None:
        return 'missing'
    if sp.get('std') is None:
        return f"{sp['mean']:.{digits}f} (n={sp['n']})"
    return f"{sp['mean']:.{digits}f} ± {sp['std']:.{digits}f}"


def _count(row: Dict) -> str:
    """Ground-truth objects of the row's cell; '(few)' when SliceMetric
    flagged it as too small for the AP to mean much."""
    n = row.get('count')
    text = '' if n is None else str(int(n))
    return text + (' (few)' if row.get('few') else '')


def _delta(d: Dict, digits: int) -> str:
    if not d or d.get('mean') is None or d.get('verdict') == 'missing':
        return 'missing'
    if d.get('ci_low') is None:
        return f"{d['mean']:+.{digits}f} ({d['verdict']})"
    return (f"{d['mean']:+.{digits}f} [{d['ci_low']:+.{digits}f}, "
            f"{d['ci_high']:+.{digits}f}] {d['verdict']}")


def markdown_table(header: List[str], lines: List[List]) -> str:
    """A Markdown table (cells converted with str)."""
    out = ['| ' + ' | '.join(str(c) for c in header) + ' |',
           '|' + '|'.join(['---'] * len(header)) + '|']
    out += ['| ' + ' | '.join(str(c) for c in line) + ' |' for line in lines]
    return '\n'.join(out)


_table = markdown_table


def _primary(analysis) -> List[Dict]:
    wanted = analysis['spec'].get('primary') or []
    out = []
    for p in wanted:
        for r in analysis['rows']:
            if r['row'] == p['row'] and \
                    r['slice'] == p.get('slice', 'all') and \
                    r['variant'] == p.get('variant', 'stock'):
                out.append(r)
    return out


def markdown(analysis: Dict) -> str:
    digits = 2 if analysis['kind'] == 'kitti' else 4
    arms = _arms(analysis)
    base = arms[0]
    spec = analysis['spec']
    conf = int(round(100 * spec['confidence']))
    lines = [f"# Benchmark: {spec.get('description') or analysis['metric']}",
             '',
             f"Metric `{analysis['metric']}` ({analysis['kind']}), seeds "
             f"{analysis['seeds']}, baseline `{base}`, arms "
             f"{', '.join(f'`{a}`' for a in arms[1:])}. Values are mean ± "
             'std over seeds; differences are paired by seed (arm − '
             f'baseline) with a {conf}% t interval; verdict: better / worse '
             'when the whole interval is above / below 0, else within '
             'noise. "missing": no value (e.g. a slice without ground truth '
             'of that class), never 0. GT: ground-truth objects of the cell '
             '(few: below SliceMetric\'s min_gt, too few for the AP to mean '
             'much). AP variants: stock = the metric\'s own AP; dense = the '
             'AP40 of the full precision-recall curve (SliceMetric; a '
             'perfect detector scores 100 on any slice).', '']
    prim = _primary(analysis)
    if prim:
        lines += ['## Primary endpoints', '']
        header = ['slice', 'AP', 'row', base] + [
            f'{a} − {base}' for a in arms[1:]]
        body = [[r['slice'], r['variant'], r['row'],
                 _pm(r['spread'][base], digits)] +
                [_delta(r['diff'][a], digits) for a in arms[1:]]
                for r in prim]
        lines += [_table(header, body), '']
    for view in _views(analysis['rows']):
        rows = [r for r in analysis['rows']
                if (r['slice'], r['variant']) == view]
        lines += [f'## Slice `{view[0]}`, AP `{view[1]}`', '']
        lines += [_table(['row', 'GT'] + arms,
                         [[r['row'], _count(r)] +
                          [_pm(r['spread'][a], digits) for a in arms]
                          for r in rows]), '']
        lines += [_table(['row'] + [f'{a} − {base}' for a in arms[1:]],
                         [[r['row']] + [_delta(r['diff'][a], digits)
                                        for a in arms[1:]] for r in rows]),
                  '']
    cost = analysis.get('cost') or {}
    if any(c['seconds_per_iter']['n'] for c in cost.values()):
        lines += ['## Training cost', '',
                  'Median seconds per training iteration of each run (its '
                  'MMEngine log, warm-up windows skipped), mean ± std over '
                  'seeds, and the ratio to the baseline run of the same '
                  'seed. Runs that shared the machine slow each other down, '
                  'so compare ratios, not absolute times.', '']
        lines += [_table(['arm', 's/iter', f'ratio to {base}'],
                         [[a, _pm(c['seconds_per_iter'], 3),
                           _pm(c['ratio_to_baseline'], 3)]
                          for a, c in cost.items()]), '']
    wts = {a: w for a, w in (analysis.get('weights') or {}).items() if w}
    if wts:
        lines += ['## Sample weights', '',
                  'W(p) of each training sample under the arm\'s likelihood '
                  'file and GeneralizedFocalLoss (eta, gamma); Kish ESS = '
                  '(Σw)²/Σw², as a fraction of the samples; per training '
                  'slice: its share of the total weight / its share of the '
                  'samples (1 = unchanged influence).', '']
        names = sorted({s for w in wts.values() for s in
                        (w.get('slices') or {})})
        body = []
        for a, w in wts.items():
            if 'error' in w:
                body.append([a, 'error: ' + w['error']] + [''] *
                            (4 + len(names)))
                continue
            sl = w.get('slices') or {}
            body.append([a, str(w['mode']), fmt(w['eta'], 3),
                         fmt(w['gamma'], 1),
                         f"{w['kish']['ratio']:.3f}",
                         f"{w['weight_min']:.3f}–{w['weight_max']:.3f}"] +
                        [f"{sl[n]['weight_share']:.3f} / "
                         f"{sl[n]['sample_share']:.3f}" if n in sl else ''
                         for n in names])
        lines += [_table(['arm', 'mode', 'eta', 'gamma', 'Kish ESS / N',
                          'W range'] + [f'{n}: weight / samples'
                                        for n in names], body), '']
    return '\n'.join(lines).rstrip() + '\n'


def summary_csv(analysis: Dict) -> str:
    arms = _arms(analysis)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(['slice', 'variant', 'row', 'arm', 'n', 'mean', 'std',
                'diff_mean', 'diff_std', 'ci_low', 'ci_high', 'p_value',
                'verdict'])
    for r in analysis['rows']:
        for a in arms:
            sp = r['spread'][a]
            d = r['diff'].get(a) or {}
            w.writerow([r['slice'], r['variant'], r['row'], a, sp['n'],
                        _num(sp['mean']), _num(sp['std']),
                        _num(d.get('mean')), _num(d.get('std')),
                        _num(d.get('ci_low')), _num(d.get('ci_high')),
                        _num(d.get('p_value')), d.get('verdict', '')])
    return buf.getvalue()


def runs_csv(analysis: Dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(['slice', 'variant', 'row', 'arm', 'seed', 'value'])
    for r in analysis['rows']:
        for a, vals in r['values'].items():
            for seed, v in vals.items():
                w.writerow([r['slice'], r['variant'], r['row'], a, seed,
                            repr(float(v))])
    return buf.getvalue()


def _num(v) -> str:
    return '' if v is None else repr(float(v))


def write_report(analysis: Dict, out_dir: str, overwrite: bool = False,
                 plots: bool = True) -> Dict[str, str]:
    check_report_free(out_dir, overwrite)
    files = OrderedDict()
    if plots:
        from mmdet3d_equity.visualization.benchmark_plots import plot_benchmark
        files.update(plot_benchmark(analysis, out_dir))
    for name, text in (('summary.csv', summary_csv(analysis)),
                       ('runs.csv', runs_csv(analysis)),
                       ('report.md', markdown(analysis))):
        files[name] = atomic_write_text(osp.join(out_dir, name), text)
    files['benchmark.json'] = osp.join(out_dir, 'benchmark.json')
    atomic_write_json(files['benchmark.json'], dict(analysis,
                                                    files=dict(files)))
    return dict(files)
