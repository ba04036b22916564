"""Semantic-scale measures (Ma et al., ICLR 2023, "semantic scale imbalance").

All quantities are computed in float64 with ``torch.linalg`` log-determinants.

* :func:`semantic_scale` -- S'(Z) = 1/2 log2 det(I_d + (d/m) Zc Zc^T) of one
  class's ``(m, d)`` feature matrix (rows are features), Zc centred by the
  class mean; 0 for ``m <= 1``. When ``m < d`` the ``m x m`` Gram form
  det(I_m + (d/m) Zc^T Zc) is used (same value, cheaper and better
  conditioned).
* :func:`semantic_scale_from_scatter` -- the same from the sufficient
  statistics (count, scatter matrix Zc Zc^T);
  :func:`semantic_scales_from_scatter` for all classes at once (one
  batched Cholesky, :func:`logdet_identity_plus`); used by the store.
* :func:`inter_class_term` -- w_i = mean distance of centre o_i to the other
  centres, W' = w / max(w), W_i = log2(alpha + W'_i), alpha >= 1.
* :func:`class_scales` -- per-class S', W and S_i = (S'_i / max S') * W_i plus
  the guards for classes with too few features (see ``min_count``).
* :func:`ssb_class_weights` -- weights proportional to 1 / S_i, normalised to
  mean 1 over classes (the loss scale is kept; NOT the paper's sum-to-one).
* :func:`imbalance_summary`, :func:`marginal_effect_curve`.
"""
import math
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]
_LN2 = math.log(2.0)


def _as_float64(features: ArrayLike, name: str = 'features') -> torch.Tensor:
    if isinstance(features, np.ndarray):
        z = torch.from_numpy(np.ascontiguousarray(features))
    elif isinstance(features, torch.Tensor):
        z = features.detach()
    else:
        raise TypeError(f'{name} must be a numpy array or torch tensor of '
                        f'shape (m, d), got {type(features).__name__}')
    if z.dim() != 2:
        raise ValueError(f'{name} must have shape (m, d) (one feature per '
                         f'row), got shape {tuple(z.shape)}')
    z = z.to(torch.float64)
    if not torch.isfinite(z).all():
        raise ValueError(f'{name} contains NaN or inf; semantic scale is '
                         f'undefined. Check the detector output.')
    return z


def _logdet_spd(mat: torch.Tensor) -> float:
    """log det of a symmetric positive definite float64 matrix."""
    mat = 0.5 * (mat + mat.transpose(-1, -2))
    chol, info = torch.linalg.cholesky_ex(mat)
    if int(info) == 0:
        return float(2.0 * torch.log(torch.diagonal(chol)).sum())
    sign, logabsdet = torch.linalg.slogdet(mat)
    if float(sign) <= 0 or not math.isfinite(float(logabsdet)):
        raise FloatingPointError(
            'semantic scale: I + (d/m) Zc Zc^T is not positive definite in '
            'float64 (features too large?). Rescale or L2-normalise them.')
    return float(logabsdet)


def semantic_scale(features: ArrayLike) -> float:
    """S'(Z) = 1/2 log2 det(I_d + (d/m) Zc Zc^T) in bits, 0 for m <= 1.

    Args:
        features: ``(m, d)`` array / tensor, one feature vector per row, all
            of one class.
    """
    z = _as_float64(features)
    m, d = z.shape
    if m <= 1 or d == 0:
        return 0.0
    zc = z - z.mean(dim=0, keepdim=True)
    a = d / m
    if m < d:
        gram = zc @ zc.T  # (m, m) == Zc^T Zc in the paper's (d, m) layout
        mat = torch.eye(m, dtype=torch.float64) + a * gram
    else:
        scatter = zc.T @ zc  # (d, d) == Zc Zc^T
        mat = torch.eye(d, dtype=torch.float64) + a * scatter
    return 0.5 * _logdet_spd(mat) / _LN2


def semantic_scale_from_scatter(scatter: torch.Tensor, count: int) -> float:
    """S' from the scatter matrix sum_k (z_k - mean)(z_k - mean)^T (d x d)."""
    scatter = scatter.detach()
    d = scatter.shape[0] if scatter.dim() else 0
    if scatter.shape != (d, d):
        raise ValueError(f'scatter must be square (d, d), got '
                         f'{tuple(scatter.shape)}')
    return float(semantic_scales_from_scatter(scatter[None], [count])[0])


def logdet_identity_plus(mats: torch.Tensor) -> torch.Tensor:
    """log det(I + M_b) for a batch (B, n, n) of symmetric positive
    semi-definite float64 matrices M_b, **in place** (``mats`` becomes
    I + M). One batched Cholesky, which reads the lower triangle only; a
    matrix it fails on (rounding at the edge of definiteness) is
    symmetrised and retried with slogdet; NaN/inf raise ValueError and a
    matrix that is not positive definite in float64 FloatingPointError."""
    mats.diagonal(dim1=-2, dim2=-1).add_(1.0)
    chol, info = torch.linalg.cholesky_ex(mats)
    out = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    for b in torch.nonzero(info).flatten().tolist():
        mat = mats[b]
        if not torch.isfinite(mat).all():
            raise ValueError('scatter matrix contains NaN or inf')
        sign, logabsdet = torch.linalg.slogdet(0.5 * (mat + mat.T))
        if float(sign) <= 0 or not math.isfinite(float(logabsdet)):
            raise FloatingPointError(
                'semantic scale: I + (d/m) Zc Zc^T is not positive definite '
                'in float64 (features too large?). Rescale or L2-normalise '
                'them.')
        out[b] = logabsdet
    return out


def semantic_scales_from_scatter(scatter: torch.Tensor,
                                 counts: Sequence[int]) -> np.ndarray:
    """S'_c = 1/2 log2 det(I_d + (d/m_c) scatter_c) for a batch of classes,
    from their (C, d, d) scatter matrices sum_k (z_k - mean)(z_k - mean)^T
    and counts m_c (0 for m_c <= 1), with one batched float64 Cholesky."""
    scatter = scatter.detach()
    if scatter.dim() != 3 or scatter.shape[1] != scatter.shape[2]:
        raise ValueError(f'scatter must have shape (C, d, d), got '
                         f'{tuple(scatter.shape)}')
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    if counts.shape[0] != scatter.shape[0]:
        raise ValueError(f'{counts.shape[0]} counts for '
                         f'{scatter.shape[0]} scatter matrices')
    d = scatter.shape[1]
    if d == 0:
        return np.zeros(counts.shape[0])
    mats = scatter.to(torch.float64) * scale_factors(
        counts, d, scatter.device).view(-1, 1, 1)
    return semantic_scales_from_scaled(mats, counts)


def scale_factors(counts: Sequence[int], d: int, device=None
                  ) -> torch.Tensor:
    """d / m_c as a float64 tensor, 0 for classes with m_c <= 1 (whose S'
    is 0 by definition)."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    a = np.where(counts > 1, d / np.maximum(counts, 1), 0.0)
    return torch.as_tensor(a, dtype=torch.float64, device=device)


def semantic_scales_from_scaled(mats: torch.Tensor, counts: Sequence[int]
                                ) -> np.ndarray:
    """S'_c from the already scaled (C, d, d) float64 matrices
    (d / m_c) scatter_c (zero for m_c <= 1), **in place**; S'_c = 0 for
    m_c <= 1."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    out = (0.5 * logdet_identity_plus(mats) / _LN2).cpu().numpy()
    out[counts <= 1] = 0.0
    return out


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha < 1:
        raise ValueError(
            f'alpha must be a finite number >= 1 (W_i = log2(alpha + W\'_i); '
            f'use 2 for long-tailed data, 1 for balanced data), got {alpha!r}')
    return alpha


def inter_class_term(centres: ArrayLike, alpha: float = 2.0,
                     valid: Optional[Sequence[bool]] = None) -> np.ndarray:
    """W_i = log2(alpha + w_i / max(w)), w_i = mean distance to other centres.

    Only the ``valid`` classes take part (default: all); invalid classes get
    NaN. With a single valid class, w = 1 (W' = 1) by convention. If all
    valid centres coincide (max w = 0), W' = 1 for all of them.
    """
    alpha = _check_alpha(alpha)
    c = _as_float64(centres, 'centres')
    n = c.shape[0]
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != (n, ):
        raise ValueError(f'valid must have one entry per class ({n}), got '
                         f'shape {valid.shape}')
    out = np.full(n, np.nan)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return out
    if idx.size == 1:
        out[idx] = math.log2(alpha + 1.0)
        return out
    cv = c[torch.from_numpy(idx)]
    dist = torch.cdist(cv, cv).numpy()
    w = dist.sum(axis=1) / (idx.size - 1)
    wmax = w.max()
    w_norm = w / wmax if wmax > 0 else np.ones_like(w)
    out[idx] = np.log2(alpha + w_norm)
    return out


def class_scales(per_class: Sequence[Optional[ArrayLike]],
                 alpha: float = 2.0,
                 min_count: int = 2,
                 scale_floor: float = 0.05) -> Dict[str, np.ndarray]:
    """Per-class semantic scales from per-class ``(m_i, d)`` features.

    ``per_class[i]`` may be ``None`` or have 0 rows (empty class). See
    :func:`class_scales_from_stats` for the rules.
    """
    counts, sp, centres, d = [], [], [], None
    for i, feats in enumerate(per_class):
        if feats is None:
            counts.append(0)
            sp.append(0.0)
            centres.append(None)
            continue
        z = _as_float64(feats, f'features of class {i}')
        if d is None:
            d = z.shape[1]
        elif z.shape[1] != d:
            raise ValueError(f'class {i} has feature dim {z.shape[1]}, '
                             f'earlier classes {d}')
        counts.append(z.shape[0])
        sp.append(semantic_scale(z))
        centres.append(z.mean(0) if z.shape[0] > 0 else None)
    d = d or 1
    cen = torch.zeros(len(per_class), d, dtype=torch.float64)
    for i, c in enumerate(centres):
        if c is not None:
            cen[i] = c
    return class_scales_from_stats(
        np.asarray(counts), np.asarray(sp), cen, alpha=alpha,
        min_count=min_count, scale_floor=scale_floor)


def class_scales_from_stats(counts: Sequence[int],
                            scale_prime: Sequence[float],
                            centres: ArrayLike,
                            alpha: float = 2.0,
                            min_count: int = 2,
                            scale_floor: float = 0.05
                            ) -> Dict[str, np.ndarray]:
    """Final class scales S_i and SSB weights from per-class statistics.

    Rules (documented in docs/semantic_scale.md):

    * A class is *measured* when it has at least ``min_count`` (>= 2)
      features. Only measured classes enter max S' and the inter-class term.
    * S_i = (S'_i / max S') * W_i for measured classes, then floored:
      S_i <- max(S_i, scale_floor). If max S' = 0 (no diversity anywhere) all
      measured classes get S_i = W_i.
    * A class with fewer than ``min_count`` features (including an empty
      class) gets the smallest S of the measured classes, i.e. the largest
      measured weight; its S' is reported as measured (0 for m <= 1).
    * No class measured: all S_i = 1 (weights 1).
    * weights = (1 / S) / mean(1 / S): mean 1 over classes.

    Returns a dict of float64 arrays: ``count``, ``scale_prime`` (S'),
    ``inter_class`` (W, NaN if unmeasured), ``scale`` (S, after the guards),
    ``measured`` (bool), ``weight``.
    """
    alpha = _check_alpha(alpha)
    min_count = int(min_count)
    if min_count < 2:
        raise ValueError(f'min_count must be >= 2 (S\' is 0 for one '
                         f'feature), got {min_count}')
    scale_floor = float(scale_floor)
    if not (math.isfinite(scale_floor) and 0 < scale_floor <= 1):
        raise ValueError(f'scale_floor must lie in (0, 1], got {scale_floor}')
    counts = np.asarray(counts, dtype=np.int64)
    sp = np.asarray(scale_prime, dtype=np.float64)
    n = counts.shape[0]
    if sp.shape != (n, ):
        raise ValueError('scale_prime must have one value per class')
    if not np.isfinite(sp).all() or (sp < 0).any():
        raise ValueError(f'scale_prime must be finite and >= 0, got {sp}')
    measured = counts >= min_count
    W = inter_class_term(centres, alpha, valid=measured)
    S = np.ones(n)
    if measured.any():
        smax = sp[measured].max()
        rel = sp / smax if smax > 0 else np.ones(n)
        S[measured] = np.maximum(rel[measured] * W[measured], scale_floor)
        S[~measured] = S[measured].min()
    inv = 1.0 / S
    weight = inv / inv.mean()
    return dict(count=counts.astype(np.float64), scale_prime=sp,
                inter_class=W, scale=S, measured=measured, weight=weight)


def ssb_class_weights(scales: Sequence[float]) -> np.ndarray:
    """w_i = (1 / S_i) / mean_j(1 / S_j); requires finite S_i > 0."""
    s = np.asarray(scales, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError('scales must be a non-empty 1-d sequence')
    if not np.isfinite(s).all() or (s <= 0).any():
        raise ValueError(f'class scales must be finite and > 0 (apply the '
                         f'floor of class_scales_from_stats), got {s}')
    inv = 1.0 / s
    return inv / inv.mean()


def _pearson(x: np.ndarray, y: np.ndarray) -> Optional[float]:
    if x.size < 2 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def _gini(x: np.ndarray) -> float:
    x = np.sort(np.asarray(x, dtype=np.float64))
    if x.size == 0 or x.sum() == 0:
        return 0.0
    n = x.size
    return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * x.sum()))


def imbalance_summary(counts: Sequence[float], scale_prime: Sequence[float],
                      scale: Sequence[float],
                      class_names: Optional[Sequence[str]] = None,
                      measured: Optional[Sequence[bool]] = None) -> dict:
    """Dataset-level imbalance: ratios, Gini coefficients, rank disagreement.

    Ratios are max/min over measured classes (None when the min is 0).
    ``count_vs_scale_pearson`` is the Pearson correlation of counts and S'
    over measured classes (None if undefined).
    """
    counts = np.asarray(counts, dtype=np.float64)
    sp = np.asarray(scale_prime, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    n = counts.size
    names = list(class_names) if class_names is not None else \
        [str(i) for i in range(n)]
    meas = np.ones(n, bool) if measured is None else np.asarray(measured,
                                                                 bool)

    def ratio(v):
        v = v[meas]
        if v.size == 0 or v.min() <= 0:
            return None
        return float(v.max() / v.min())

    by_count = [names[i] for i in np.argsort(-counts, kind='stable')]
    by_scale = [names[i] for i in np.argsort(-s, kind='stable')]
    return dict(
        num_classes=n,
        num_measured=int(meas.sum()),
        total_objects=int(counts.sum()),
        count_ratio=ratio(counts),
        scale_prime_ratio=ratio(sp),
        scale_ratio=ratio(s),
        count_gini=_gini(counts),
        scale_prime_gini=_gini(sp[meas]) if meas.any() else 0.0,
        count_vs_scale_pearson=_pearson(counts[meas], sp[meas]),
        classes_by_count=by_count,
        classes_by_scale=by_scale,
        rank_order_differs=by_count != by_scale)


def marginal_effect_curve(features: ArrayLike,
                          sizes: Optional[Sequence[int]] = None,
                          repeats: int = 3,
                          seed: int = 0) -> Dict[str, List[float]]:
    """Semantic scale against number of samples, by random subsampling.

    For each size m in ``sizes`` (default: up to 12 sizes geometrically
    spaced in [2, M]), draws ``repeats`` random subsets of m rows (without
    replacement, numpy ``default_rng(seed)``) and reports mean and std of S'.
    """
    z = _as_float64(features)
    M = z.shape[0]
    if repeats < 1:
        raise ValueError(f'repeats must be >= 1, got {repeats}')
    if sizes is None:
        if M < 2:
            sizes = [M] if M else []
        else:
            sizes = sorted({int(round(v)) for v in
                            np.geomspace(2, M, num=min(12, M - 1))})
    sizes = [int(s) for s in sizes]
    bad = [s for s in sizes if s < 0 or s > M]
    if bad:
        raise ValueError(f'subsample sizes {bad} outside [0, {M}] (the '
                         f'number of features)')
    rng = np.random.default_rng(seed)
    means, stds = [], []
    for m in sizes:
        vals = []
        for _ in range(repeats if m < M else 1):
            idx = torch.from_numpy(rng.choice(M, size=m, replace=False))
            vals.append(semantic_scale(z[idx]))
        means.append(float(np.mean(vals)))
        stds.append(float(np.std(vals)))
    return dict(sizes=sizes, mean=means, std=stds)
