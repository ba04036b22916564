"""DatasetEquity's Generalized Focal Loss (GFL) as an MMDetection3D module.

Not to be confused with mmdet's unrelated "GFL" (QualityFocalLoss /
DistributionFocalLoss of Generalized Focal Loss for dense detection): this
one re-weights whole samples by their appearance likelihood p,

    W(p; eta, gamma) = (eta + (1 - p) ** gamma) / (eta + 1).

The module holds the configuration (eta, gamma, which loss terms of the head
are weighted, normalisation) and maps likelihoods to per-sample weights. It
is the one owner of these settings: it is configured in
:class:`mmdet3d_equity.engine.hooks.EquityHook` (which applies the weights
exactly per sample to the head's loss terms) or in
:class:`mmdet3d_equity.datasets.EquityWeightedSampler` (resampling mode);
:meth:`forward` weights per-sample losses you computed yourself. It is not a
head loss: placed as a head's ``loss_cls`` it refuses to run and says where
it belongs.
"""
import math
from typing import Optional, Sequence, Union

import torch
from mmdet3d.registry import MODELS
from torch import Tensor, nn

from ...utils.config_checks import MISPLACED
from .equity_weight import check_weight_param, equity_weight

NORMALISATIONS = ('none', 'dataset')


@MODELS.register_module()
class GeneralizedFocalLoss(nn.Module):
    """Per-sample DatasetEquity weights W(p) (Generalized Focal Loss).

    Args:
        eta (float): >= 0. The most common appearance (p = 1) is weighted
            eta / (eta + 1). Defaults to 1.0 (the paper's default).
        gamma (float): >= 0. ``gamma = 0`` gives W = 1 (baseline).
            Defaults to 5.0.
        terms (str | list[str]): which loss terms of the head are weighted:
            ``'all'`` (default) or names from the head adapter's ``terms``
            (:mod:`mmdet3d_equity.models.head_adapters`), e.g.
            ``['cls', 'bbox']`` for Anchor3DHead. Validated against the head
            when the hook is installed.
        normalisation (str): ``'none'`` (the paper: weights W in
            [eta/(eta+1), 1]) or ``'dataset'`` (W divided by its mean over the
            training set as iterated, so the loss scale and the tuned learning
            rate stay as they were). Must be given explicitly when not
            'none'.
    """

    def __init__(self,
                 eta: float = 1.0,
                 gamma: float = 5.0,
                 terms: Union[str, Sequence[str]] = 'all',
                 normalisation: str = 'none') -> None:
        super().__init__()
        eta = check_weight_param('GeneralizedFocalLoss', 'eta', eta)
        gamma = check_weight_param('GeneralizedFocalLoss', 'gamma', gamma)
        if normalisation not in NORMALISATIONS:
            raise ValueError(
                f'GeneralizedFocalLoss.normalisation must be one of '
                f'{NORMALISATIONS}, got {normalisation!r}')
        if isinstance(terms, str):
            if terms != 'all':
                raise ValueError(
                    "GeneralizedFocalLoss.terms must be 'all' or a list of "
                    f'term names, got {terms!r}')
        else:
            terms = list(terms)
            if not terms or not all(isinstance(t, str) for t in terms):
                raise ValueError(
                    "GeneralizedFocalLoss.terms must be 'all' or a non-empty "
                    f'list of term names, got {terms!r}')
        self.eta = eta
        self.gamma = gamma
        self.terms = terms
        self.normalisation = normalisation
        self._dataset_mean: Optional[float] = None

    def extra_repr(self) -> str:
        return (f'eta={self.eta}, gamma={self.gamma}, terms={self.terms!r}, '
                f'normalisation={self.normalisation!r}')

    # ------------------------------------------------------------------
    def raw_weight(self, likelihood):
        """W(p) without normalisation (float, numpy array or tensor)."""
        return equity_weight(likelihood, self.eta, self.gamma)

    def set_dataset_mean(self, mean_weight: float) -> None:
        """Set the training-set mean of W used by normalisation='dataset'."""
        mean_weight = float(mean_weight)
        if not math.isfinite(mean_weight) or mean_weight <= 0:
            raise ValueError('GeneralizedFocalLoss: the dataset mean weight '
                             f'must be finite and > 0, got {mean_weight}')
        self._dataset_mean = mean_weight

    @property
    def scale(self) -> float:
        """The factor applied to W(p): 1 or 1 / (training-set mean of W)."""
        if self.normalisation == 'none':
            return 1.0
        if self._dataset_mean is None:
            raise RuntimeError(
                "GeneralizedFocalLoss(normalisation='dataset') needs the "
                'training-set mean weight; EquityHook sets it in before_train '
                'from the EquityDataset, or call set_dataset_mean()')
        return 1.0 / self._dataset_mean

    def weights(self, likelihood: Tensor) -> Tensor:
        """Per-sample weights (normalised as configured), float64."""
        p = torch.as_tensor(likelihood, dtype=torch.float64)
        return self.raw_weight(p) * self.scale

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith('__'):
                raise
            # a head reading attributes of its loss_cls (use_sigmoid, ...)
            raise AttributeError(
                f'GeneralizedFocalLoss has no attribute {name!r}. '
                f'{MISPLACED}') from None

    def forward(self, per_sample_loss: Tensor, likelihood: Tensor,
                reduction: str = 'sum', **head_kwargs) -> Tensor:
        """Weight per-sample losses: sum (or mean) of w_b * loss_b.

        Args:
            per_sample_loss (Tensor): shape (B,), sample b's loss.
            likelihood (Tensor): shape (B,), sample b's likelihood p_b.
            reduction (str): 'sum' or 'mean' over the batch.
        """
        if head_kwargs:
            # called like a head's classification loss (avg_factor=...)
            raise TypeError(
                f'GeneralizedFocalLoss.forward got {sorted(head_kwargs)}. '
                f'{MISPLACED}')
        if per_sample_loss.dim() != 1 or per_sample_loss.shape != torch.Size(
                [torch.as_tensor(likelihood).numel()]):
            raise ValueError(
                'GeneralizedFocalLoss.forward expects per_sample_loss and '
                'likelihood of shape (B,), got '
                f'{tuple(per_sample_loss.shape)} and '
                f'{tuple(torch.as_tensor(likelihood).shape)}. {MISPLACED}')
        w = self.weights(likelihood).to(per_sample_loss)
        out = (w * per_sample_loss)
        if reduction == 'sum':
            return out.sum()
        if reduction == 'mean':
            return out.mean()
        raise ValueError(f"reduction must be 'sum' or 'mean', got "
                         f'{reduction!r}')
