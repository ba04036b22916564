"""Figure of the appearance likelihood p of each slice (compute_likelihoods
/ score_split with a slice file): one box per slice and split, the samples
drawn over it, so a rare slice with low p stands out at a glance.

matplotlib with the Agg backend; the PNG is written atomically.
"""
from typing import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def plot_likelihood_by_slice(data: Mapping, slices: Mapping,
                             names: Sequence[str], path: str,
                             overwrite: bool = False) -> str:
    """``data`` = ``{split: (sample ids, likelihoods)}``; ``slices`` =
    ``{slice name: set of ids}``. Writes ``path`` and returns it."""
    from ..utils.fileio import atomic_savefig
    splits = list(data)
    groups = list(names) + ['all']
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(groups) *
                                        len(splits)), 3.6))
    width = 0.8 / max(1, len(splits))
    rng = np.random.default_rng(0)
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for j, split in enumerate(splits):
        ids, p = data[split]
        ids = [str(i) for i in ids]
        p = np.asarray(p, np.float64)
        labelled = False
        for g, name in enumerate(groups):
            members = set(ids) if name == 'all' else slices.get(name, set())
            v = p[[i in members for i in ids]]
            x = g + (j - (len(splits) - 1) / 2) * width
            if len(v):
                ax.boxplot([v], positions=[x], widths=width * 0.8,
                           showfliers=False, medianprops=dict(
                               color=colours[j % len(colours)]))
                ax.plot(x + rng.uniform(-width / 4, width / 4, len(v)), v,
                        '.', ms=3, alpha=0.5,
                        color=colours[j % len(colours)],
                        label=None if labelled else split)
                labelled = True
            else:
                ax.text(x, 0.5, 'none', ha='center', va='center',
                        fontsize=7, rotation=90)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel('appearance likelihood p')
    ax.set_title('likelihood by slice (box: quartiles, line: median)')
    if len(splits) > 1:  # outside the axes: it never covers a box
        ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    try:
        atomic_savefig(fig, path, overwrite=overwrite, dpi=110,
                       bbox_inches='tight')
    finally:
        plt.close(fig)
    return path
