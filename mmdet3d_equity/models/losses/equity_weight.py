"""The DatasetEquity sample weight W(p) of the Generalized Focal Loss."""
import math
import numbers
from typing import Union

import numpy as np
import torch

ArrayLike = Union[float, np.ndarray, torch.Tensor]


def check_weight_param(owner: str, name: str, value) -> float:
    """``value`` as a float if it is a real number >= 0 (not a bool, not a
    string); otherwise an error naming ``owner.name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, numbers.Real):
        raise TypeError(f'{owner}: {name} must be a number, got '
                        f'{value!r} ({type(value).__name__})')
    if not math.isfinite(float(value)) or value < 0:
        raise ValueError(f'{owner}: {name} must be a finite number >= 0, '
                         f'got {value!r}')
    return float(value)


def _check_params(eta, gamma) -> None:
    check_weight_param('equity_weight', 'eta', eta)
    check_weight_param('equity_weight', 'gamma', gamma)


def equity_weight(p: ArrayLike, eta: float = 1.0, gamma: float = 5.0):
    """W(p; eta, gamma) = (eta + (1 - p) ** gamma) / (eta + 1).

    ``p`` is the appearance likelihood of a sample in [0, 1] (1: the most
    common appearance). Rare samples (p -> 0) keep weight 1, the most common
    appearance is down-weighted to ``eta / (eta + 1)``; ``gamma = 0`` gives
    W = 1 everywhere (the baseline). Accepts a float, a numpy array or a torch
    tensor and returns the same kind (float64 for numpy / python input).
    """
    _check_params(eta, gamma)
    eta, gamma = float(eta), float(gamma)
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
