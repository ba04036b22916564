"""Statistics of a multi-seed benchmark: spread over seeds, paired
differences to the baseline with a t confidence interval, and a verdict.

Runs of two arms with the same seed share data order, augmentation draws and
initialisation, so the comparison is *paired*: for seeds s = 1..n the
differences d_s = arm_s - baseline_s are summarised by their mean and a
two-sided Student-t interval (``scipy.stats``) at ``confidence``. The verdict
is 'better' when the whole interval is above 0, 'worse' when it is below 0,
and 'within noise' otherwise; with fewer than two seeds there is no interval
and the verdict says so. A row without ground truth (count 0: an AP of 0
on every seed is no measurement) is 'missing', whatever its interval.
"""
import math
from typing import Dict, Mapping, Optional

import numpy as np

BETTER, WORSE, NOISE = 'better', 'worse', 'within noise'
MISSING = 'missing'
TOO_FEW = 'n/a (needs >= 2 seeds)'


def spread(values: Mapping[int, float]) -> Dict:
    """n, mean and sample standard deviation (ddof=1; None for n < 2)."""
    v = np.asarray([values[k] for k in sorted(values)], dtype=np.float64)
    n = int(v.size)
    if n == 0:
        return dict(n=0, mean=None, std=None)
    return dict(n=n, mean=float(v.mean()),
                std=float(v.std(ddof=1)) if n > 1 else None)


def paired_difference(baseline: Mapping[int, float],
                      arm: Mapping[int, float],
                      confidence: float = 0.95,
                      count: Optional[int] = None) -> Dict:
    """Paired comparison over the seeds both have.

    Returns n, the seeds used, mean and std of the differences, the interval
    (ci_low, ci_high; None for n < 2), the two-sided p value of a paired
    t-test (None for n < 2 or zero spread) and the verdict; ``count``: the
    row's ground-truth count, 0 makes the verdict :data:`MISSING`.
    """
    from scipy import stats
    if not 0 < confidence < 1:
        raise ValueError(f'confidence must lie in (0, 1), got {confidence}')
    seeds = sorted(set(baseline) & set(arm))
    d = np.asarray([arm[s] - baseline[s] for s in seeds], dtype=np.float64)
    n = int(d.size)
    out = dict(n=n, seeds=seeds, confidence=confidence,
               mean=float(d.mean()) if n else None,
               std=float(d.std(ddof=1)) if n > 1 else None,
               ci_low=None, ci_high=None, p_value=None, verdict=TOO_FEW)
    if n < 2:
        return _no_ground_truth(out, count)
    if out['std'] == 0.0:
        # every seed moved by exactly the same amount: no spread to test
        out['ci_low'] = out['ci_high'] = out['mean']
    else:
        res = stats.ttest_1samp(d, 0.0)
        ci = res.confidence_interval(confidence_level=confidence)
        out['ci_low'], out['ci_high'] = float(ci.low), float(ci.high)
        out['p_value'] = float(res.pvalue)
    out['verdict'] = verdict(out['ci_low'], out['ci_high'])
    return _no_ground_truth(out, count)


def _no_ground_truth(out: Dict, count: Optional[int]) -> Dict:
    if count == 0:
        out['verdict'] = MISSING
    return out


def verdict(ci_low: Optional[float], ci_high: Optional[float]) -> str:
    if ci_low is None or ci_high is None:
        return TOO_FEW
    if ci_low > 0:
        return BETTER
    if ci_high < 0:
        return WORSE
    return NOISE


def kish_effective_sample_size(weights) -> Dict:
    """Kish's effective sample size (sum w)^2 / sum w^2 of sample weights,
    and its ratio to the number of samples (1 for equal weights)."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.size == 0:
        raise ValueError('kish_effective_sample_size: no weights')
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError('kish_effective_sample_size: weights must be finite'
                         ', >= 0 and not all 0')
    ess = float(w.sum() ** 2 / (w ** 2).sum())
    return dict(n=int(w.size), ess=ess, ratio=ess / w.size)


def weight_shares(weights, groups) -> Dict[str, Dict]:
    """Each group's share of the samples and of the total weight.

    ``groups`` gives one group name (or a list of names) per sample; a sample
    in several groups counts in each. Returns {group: {samples, sample_share,
    weight_share, weight_per_sample_ratio}} where the ratio is weight share /
    sample share (1: the weighting leaves the group's influence unchanged).
    """
    w = np.asarray(weights, dtype=np.float64).ravel()
    if len(groups) != w.size:
        raise ValueError(f'weight_shares: {w.size} weights but '
                         f'{len(groups)} group entries')
    total = w.sum()
    names = {}
    for i, g in enumerate(groups):
        for name in ([g] if isinstance(g, str) else list(g)):
            names.setdefault(name, []).append(i)
    out = {}
    for name in sorted(names):
        idx = np.asarray(names[name])
        s_share = idx.size / w.size
        w_share = float(w[idx].sum() / total)
        out[name] = dict(samples=int(idx.size), sample_share=s_share,
                         weight_share=w_share,
                         weight_per_sample_ratio=w_share / s_share)
    return out


def fmt(value: Optional[float], digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 'missing'
    return f'{value:.{digits}f}'
