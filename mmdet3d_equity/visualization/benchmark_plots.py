"""Plots of a multi-seed benchmark (``tools/compare_arms.py``).

matplotlib with the Agg backend; every PNG is written atomically.
"""
import os.path as osp
from collections import OrderedDict
from typing import Dict

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..utils.fileio import atomic_savefig  # noqa: E402

PLOT_PATTERNS = ('per_class_*.png', 'differences_*.png')


def _grouped(analysis: Dict) -> Dict:
    """{variant: {slice: [rows]}} in the analysis' order."""
    out = OrderedDict()
    for r in analysis['rows']:
        out.setdefault(r['variant'], OrderedDict()).setdefault(
            r['slice'], []).append(r)
    return out


def _arms(analysis):
    spec = analysis['spec']
    return [spec['baseline']['name']] + [a['name'] for a in spec['arms']]


def bar_errors(mean, std):
    """Error bars (lower, upper) of bars ``mean`` +- ``std`` that stop at 0
    below (an AP is never negative); NaN means stay NaN."""
    m = np.asarray(mean, dtype=np.float64)
    sd = np.nan_to_num(np.asarray(std, dtype=np.float64), nan=0.0)
    lower = np.where(np.isnan(m), 0.0, np.minimum(sd, np.maximum(m, 0.0)))
    return np.vstack([lower, sd])


def difference_limits(analysis: Dict, rows) -> tuple:
    """One x range (lo, hi) for every panel of a differences plot: the
    intervals of all rows, 0 included, with a 5% margin."""
    vals = [0.0]
    for r in rows:
        for d in r['diff'].values():
            for k in ('mean', 'ci_low', 'ci_high'):
                if d.get(k) is not None and d.get('verdict') != 'missing':
                    vals.append(float(d[k]))
    lo, hi = min(vals), max(vals)
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def plot_benchmark(analysis: Dict, out_dir: str) -> Dict[str, str]:
    """Per AP variant: per-class bars of every arm (mean, error bar std,
    cut at 0; y axis from 0) per slice, and the paired differences to the
    baseline with their intervals (one x scale for every panel; rows without
    ground truth marked 'missing'). Legends sit outside the axes, and the
    figures are saved with their labels in full. Returns {file name:
    path}."""
    arms = _arms(analysis)
    unit = '%' if analysis['kind'] == 'kitti' else '0-1'
    top = 100.0 if analysis['kind'] == 'kitti' else 1.0
    files = OrderedDict()
    cmap = plt.get_cmap('tab10' if len(arms) <= 10 else 'tab20')
    for variant, by_slice in _grouped(analysis).items():
        n = len(by_slice)
        most = max(len(r) for r in by_slice.values())
        # -- per class -------------------------------------------------
        fig, axes = plt.subplots(n, 1, figsize=(max(8, 1.3 * most * len(
            arms) / 3), 3.2 * n), squeeze=False)
        width = 0.8 / len(arms)
        for ax, (sl, rows) in zip(axes[:, 0], by_slice.items()):
            x = np.arange(len(rows))
            highest = 0.0
            for k, a in enumerate(arms):
                mean = [r['spread'][a]['mean'] for r in rows]
                std = [r['spread'][a]['std'] or 0.0 for r in rows]
                m = np.array([np.nan if v is None else v for v in mean],
                             dtype=np.float64)
                err = bar_errors(m, std)
                ax.bar(x + (k - (len(arms) - 1) / 2) * width, m, width,
                       yerr=err, capsize=2, label=a, color=cmap(k))
                tops = np.nan_to_num(m, nan=0.0) + err[1]
                highest = max(highest, float(tops.max()) if tops.size
                              else 0.0)
            ax.set_xticks(x)
            ax.set_xticklabels([r['row'] for r in rows],
                               rotation=30 if len(rows) > 6 else 0,
                               ha='right' if len(rows) > 6 else 'center')
            ax.set_ylim(0, max(highest * 1.08, 1e-6 * top) if highest
                        else top)
            ax.set_title(f'slice {sl}, AP {variant}')
            ax.set_ylabel(f"{analysis['metric']} ({unit})")
            ax.grid(axis='y', alpha=0.3)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.tight_layout()
        fig.legend(handles, labels, loc='upper left', fontsize=8,
                   bbox_to_anchor=(1.0, 1.0), title='arm')
        name = f'per_class_{variant}.png'
        files[name] = atomic_savefig(fig, osp.join(out_dir, name), dpi=110,
                                     bbox_inches='tight')
        plt.close(fig)
        # -- differences -------------------------------------------------
        if len(arms) < 2:
            continue
        lo, hi = difference_limits(
            analysis, [r for rows in by_slice.values() for r in rows])
        fig, axes = plt.subplots(n, 1, figsize=(8, 0.5 + 0.28 * (len(
            arms) - 1) * most + 1.2 * n), squeeze=False, sharex=True)
        for ax, (sl, rows) in zip(axes[:, 0], by_slice.items()):
            ticks, labels = [], []
            y = 0
            for r in rows:
                for k, a in enumerate(arms[1:]):
                    d = r['diff'][a]
                    if d.get('verdict') == 'missing' or d['mean'] is None:
                        ax.text(0, y, ' missing', va='center', fontsize=7,
                                color='tab:grey')
                    else:
                        lo_d = d['ci_low'] if d['ci_low'] is not None \
                            else d['mean']
                        hi_d = d['ci_high'] if d['ci_high'] is not None \
                            else d['mean']
                        colour = {'better': 'tab:green', 'worse': 'tab:red'
                                  }.get(d['verdict'], 'tab:grey')
                        err = [[d['mean'] - lo_d], [hi_d - d['mean']]]
                        ax.errorbar(d['mean'], y, xerr=err, fmt='o',
                                    color=colour, capsize=3)
                    ticks.append(y)
                    labels.append(f"{r['row']}: {a}")
                    y += 1
                y += 0.5
            ax.axvline(0, color='k', lw=0.8)
            ax.set_xlim(lo, hi)
            ax.set_yticks(ticks)
            ax.set_yticklabels(labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_title(f'slice {sl}, AP {variant}: arm − {arms[0]} '
                         f'({int(round(100 * analysis["spec"]["confidence"]))}'
                         '% interval; green better, red worse)', fontsize=9)
            ax.grid(axis='x', alpha=0.3)
        axes[-1, 0].set_xlabel(f"difference in {analysis['metric']} ({unit})")
        fig.tight_layout()
        name = f'differences_{variant}.png'
        files[name] = atomic_savefig(fig, osp.join(out_dir, name), dpi=110,
                                     bbox_inches='tight')
        plt.close(fig)
    return files
