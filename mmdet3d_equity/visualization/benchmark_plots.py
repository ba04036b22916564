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


def plot_benchmark(analysis: Dict, out_dir: str) -> Dict[str, str]:
    """Per AP variant: per-class bars of every arm (mean, error bar std)
    per slice, and the paired differences to the baseline with their
    intervals. Returns {file name: path}."""
    arms = _arms(analysis)
    unit = '%' if analysis['kind'] == 'kitti' else '0-1'
    files = OrderedDict()
    cmap = plt.get_cmap('tab10' if len(arms) <= 10 else 'tab20')
    for variant, by_slice in _grouped(analysis).items():
        n = len(by_slice)
        # -- per class -------------------------------------------------
        fig, axes = plt.subplots(n, 1, figsize=(max(8, 1.3 * max(
            len(r) for r in by_slice.values()) * len(arms) / 3), 3.2 * n),
            squeeze=False)
        width = 0.8 / len(arms)
        for ax, (sl, rows) in zip(axes[:, 0], by_slice.items()):
            x = np.arange(len(rows))
            for k, a in enumerate(arms):
                mean = [r['spread'][a]['mean'] for r in rows]
                std = [r['spread'][a]['std'] or 0.0 for r in rows]
                m = np.array([np.nan if v is None else v for v in mean])
                ax.bar(x + (k - (len(arms) - 1) / 2) * width, m, width,
                       yerr=std, capsize=2, label=a, color=cmap(k))
            ax.set_xticks(x)
            ax.set_xticklabels([r['row'] for r in rows])
            ax.set_title(f'slice {sl}, AP {variant}')
            ax.set_ylabel(f"{analysis['metric']} ({unit})")
            ax.grid(axis='y', alpha=0.3)
        axes[0, 0].legend(fontsize=8, ncol=min(len(arms), 4))
        fig.tight_layout()
        name = f'per_class_{variant}.png'
        files[name] = atomic_savefig(fig, osp.join(out_dir, name), dpi=110)
        plt.close(fig)
        # -- differences -------------------------------------------------
        if len(arms) < 2:
            continue
        fig, axes = plt.subplots(n, 1, figsize=(8, 0.5 + 0.28 * (len(
            arms) - 1) * max(len(r) for r in by_slice.values()) * 1.0 + 1.2
            * n), squeeze=False)
        for ax, (sl, rows) in zip(axes[:, 0], by_slice.items()):
            ticks, labels = [], []
            y = 0
            for r in rows:
                for k, a in enumerate(arms[1:]):
                    d = r['diff'][a]
                    if d['mean'] is not None:
                        lo = d['ci_low'] if d['ci_low'] is not None \
                            else d['mean']
                        hi = d['ci_high'] if d['ci_high'] is not None \
                            else d['mean']
                        colour = {'better': 'tab:green', 'worse': 'tab:red'
                                  }.get(d['verdict'], 'tab:grey')
                        err = [[d['mean'] - lo], [hi - d['mean']]]
                        ax.errorbar(d['mean'], y, xerr=err, fmt='o',
                                    color=colour, capsize=3)
                    ticks.append(y)
                    labels.append(f"{r['row']}: {a}")
                    y += 1
                y += 0.5
            ax.axvline(0, color='k', lw=0.8)
            ax.set_yticks(ticks)
            ax.set_yticklabels(labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_title(f'slice {sl}, AP {variant}: arm − {arms[0]} '
                         f'({int(round(100 * analysis["spec"]["confidence"]))}'
                         '% interval; green better, red worse)', fontsize=9)
            ax.grid(axis='x', alpha=0.3)
        fig.tight_layout()
        name = f'differences_{variant}.png'
        files[name] = atomic_savefig(fig, osp.join(out_dir, name), dpi=110)
        plt.close(fig)
    return files
