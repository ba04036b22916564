"""The DatasetEquity sample weight W(p) of the Generalized Focal Loss."""
from typing import Union

import numpy as np
import torch

ArrayLike = Union[float, np.ndarray, torch.Tensor]


def _check_params(eta: float, gamma: float) -> None:
    if not np.isfinite(eta) or eta < 0:
        raise ValueError(f'equity_weight: eta must be a finite number >= 0, '
                         f'got {eta!r}')
    if not np.isfinite(gamma) or gamma < 0:
        raise ValueError(f'equity_weight: gamma must be a finite number >= 0, '
                         f'got {gamma!r}')


def equity_weight(p: ArrayLike, eta: float = 1.0, gamma: float = 5.0):
    """W(p; eta, gamma) = (eta + (1 - p) ** gamma) / (eta + 1).

    ``p`` is the appearance likelihood of a sample in [0, 1] (1: the most
    common appearance). Rare samples (p -> 0) keep weight 1, the most common
    appearance is down-weighted to ``eta / (eta + 1)``; ``gamma = 0`` gives
    W = 1 everywhere (the baseline). Accepts a float, a numpy array or a torch
    tensor and returns the same kind (float64 for numpy / python input).
    """
    _check_params(float(eta), float(gamma))
    if isinstance(p, torch.Tensor):
        if not torch.isfinite(p).all():
            raise ValueError('equity_weight: p contains NaN or inf')
        if (p < 0).any() or (p > 1).any():
            raise ValueError('equity_weight: likelihoods p must lie in [0, 1]')
        return (eta + (1 - p) ** gamma) / (eta + 1)
    arr = np.asarray(p, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError('equity_weight: p contains NaN or inf')
    if (arr < 0).any() or (arr > 1).any():
        raise ValueError('equity_weight: likelihoods p must lie in [0, 1]')
    w = (eta + (1.0 - arr) ** gamma) / (eta + 1.0)
    return float(w) if np.ndim(p) == 0 and not isinstance(p, np.ndarray) else w
