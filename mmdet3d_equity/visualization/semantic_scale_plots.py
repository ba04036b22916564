"""Plots of the semantic-scale report (matplotlib, Agg backend)."""
from typing import Dict, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from ..utils.fileio import atomic_savefig  # noqa: E402


def _save(fig, path: str, overwrite: bool) -> None:
    try:
        atomic_savefig(fig, path, overwrite=overwrite, dpi=120,
                       bbox_inches='tight')
    finally:
        plt.close(fig)


def plot_count_vs_scale(class_names: Sequence[str], counts: Sequence[float],
                        scale_prime: Sequence[float], scale: Sequence[float],
                        path: str, overwrite: bool = True) -> None:
    """Per class: number of objects (bars) and semantic scale S' (line)."""
    fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(13, 4.5))
    fig.subplots_adjust(wspace=0.5)
    x = range(len(class_names))
    ax1.bar(x, counts, color='tab:gray', alpha=0.6, label='objects')
    ax1.set_ylabel('number of objects')
    ax1.set_xticks(list(x))
    ax1.set_xticklabels(class_names, rotation=45, ha='right')
    ax2 = ax1.twinx()
    ax2.plot(list(x), scale_prime, 'o-', color='tab:red',
             label="semantic scale S'")
    ax2.set_ylabel("S' (bits)")
    ax1.set_title('count vs semantic scale per class')
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc='upper right', fontsize=8)
    ax3.scatter(counts, scale, color='tab:blue')
    for n, c, s in zip(class_names, counts, scale):
        ax3.annotate(n, (c, s), fontsize=8, xytext=(3, 3),
                     textcoords='offset points')
    if min(counts) > 0:
        ax3.set_xscale('log')
    ax3.set_xlabel('number of objects')
    ax3.set_ylabel('class scale S (with inter-class term)')
    ax3.set_title('S against count')
    _save(fig, path, overwrite)


def plot_marginal_effect(curves: Dict[str, dict], path: str,
                         overwrite: bool = True) -> None:
    """S' against number of sampled objects, one line (mean +- std) per
    class."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        if not c['sizes']:
            continue
        m = c['mean']
        s = c['std']
        ax.plot(c['sizes'], m, 'o-', ms=3, label=name)
        ax.fill_between(c['sizes'], [a - b for a, b in zip(m, s)],
                        [a + b for a, b in zip(m, s)], alpha=0.2)
    ax.set_xscale('log')
    ax.set_xlabel('number of objects (random subsets)')
    ax.set_ylabel("semantic scale S' (bits)")
    ax.set_title('marginal effect of more objects')
    ax.legend(fontsize=8)
    _save(fig, path, overwrite)
