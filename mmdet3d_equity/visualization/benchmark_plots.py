"""Plot of a baseline-vs-equity comparison (``tools/benchmark.py``).

matplotlib with the Agg backend; the PNG is written atomically.
"""
import math
from typing import Optional, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from mmdet3d_equity.fileio import atomic_savefig  # noqa: E402


def _fmt_gain(rel: Optional[float]) -> str:
    return 'n/a' if rel is None else f'{rel:+.1f}%'


def plot_comparison(names: Sequence[str], baseline: Sequence[float],
                    equity: Sequence[float],
                    rel_gain_pct: Sequence[Optional[float]], path: str, *,
                    n_classes: Optional[int] = None, ylabel: str = 'AP',
                    title: str = 'baseline vs equity',
                    labels: Sequence[str] = ('baseline', 'equity')) -> None:
    """Grouped bar chart: one group per row (class, then overall rows), a
    baseline and an equity bar in each, the relative gain written above.

    ``n_classes``: how many of the leading rows are classes; a dashed line
    separates them from the overall rows after them (all rows are classes
    when None). ``rel_gain_pct`` entries are None where the gain is undefined
    (baseline 0), shown as 'n/a'.
    """
    n = len(names)
    if not (n == len(baseline) == len(equity) == len(rel_gain_pct)):
        raise ValueError(
            f'plot_comparison: {n} names but {len(baseline)} baseline, '
            f'{len(equity)} equity and {len(rel_gain_pct)} gain values')
    if n == 0:
        raise ValueError('plot_comparison: nothing to plot (no rows)')
    for v in list(baseline) + list(equity):
        if not math.isfinite(v):
            raise ValueError(f'plot_comparison: non-finite value {v!r}')
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * n + 2.0), 4.5))
    width = 0.38
    x = list(range(n))
    ax.bar([i - width / 2 for i in x], baseline, width, label=labels[0],
           color='tab:gray')
    ax.bar([i + width / 2 for i in x], equity, width, label=labels[1],
           color='tab:blue')
    top = max(list(baseline) + list(equity) + [0.0])
    pad = 0.02 * top if top > 0 else 0.02
    for i, (b, e, g) in enumerate(zip(baseline, equity, rel_gain_pct)):
        color = 'black' if g is None else (
            'tab:green' if g > 0 else 'tab:red' if g < 0 else 'black')
        ax.text(i, max(b, e) + pad, _fmt_gain(g), ha='center', va='bottom',
                fontsize=8, color=color)
    if n_classes is not None and 0 < n_classes < n:
        ax.axvline(n_classes - 0.5, color='black', linestyle='--',
                   linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30 if n > 4 else 0,
                       ha='right' if n > 4 else 'center')
    ax.set_ylim(0, (top if top > 0 else 1.0) * 1.2)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.0, 1.0))
    try:
        atomic_savefig(fig, path, dpi=120, bbox_inches='tight')
    finally:
        plt.close(fig)
