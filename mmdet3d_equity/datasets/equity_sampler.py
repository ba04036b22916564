"""Resampling mode: draw training samples with probability proportional to W.

For heads whose loss cannot be weighted exactly per sample, DatasetEquity can
be applied by sampling instead: every index i of the train dataset is drawn
with probability W_i / sum_j W_j (with replacement), so the expected gradient
of a batch equals the gradient of the W-weighted loss normalised by the mean
weight (``normalisation='dataset'``), exactly in expectation. Use it *instead
of* EquityHook's loss weighting, never together (refused). The sampler owns
eta and gamma in this mode (its ``loss``, a GeneralizedFocalLoss config).
"""
import logging
import math
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from mmdet3d.registry import DATA_SAMPLERS, MODELS
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import print_log
from torch.utils.data import Sampler

from mmdet3d_equity.utils.errors import ArgumentError

from .equity_dataset import find_equity_dataset

#: raw weights W below this (1% of the rarest appearance's weight 1) count
#: as 'almost 0' in :func:`weight_report`
SMALL_WEIGHT = 0.01
#: DefaultSampler / InfiniteSampler arguments that a base config's sampler
#: leaves behind when a config replaces it without _delete_=True
_BASE_SAMPLER_KEYS = ('shuffle', 'round_up')


def weight_report(who: str, w, gfl) -> Tuple[str, int]:
    """(message, log level) on the raw weights ``w`` of the train indices:
    their mean/min/max and how many are 0 or below :data:`SMALL_WEIGHT`
    (eta = 0 gives the most common appearance, p = 1, the weight 0)."""
    w = np.asarray(w, dtype=np.float64)
    zero, small = int((w == 0).sum()), int((w < SMALL_WEIGHT).sum())
    msg = (f'{who}: W(p) over the {len(w)} train indices (eta={gfl.eta}, '
           f'gamma={gfl.gamma}): mean {w.mean():.4f}, min {w.min():.4f}, max '
           f'{w.max():.4f}; {zero} of {len(w)} get weight 0 and {small} a '
           f'weight below {SMALL_WEIGHT}')
    if zero:
        msg += (' (with eta=0 the most common appearance, p=1, gets W=0: '
                'those samples do not train)')
    return msg, logging.WARNING if zero else logging.INFO


def refuse_base_sampler_keys(sampler: str, unknown: dict) -> None:
    """One line for arguments a sampler does not take, naming
    ``_delete_=True`` when they are the base config's DefaultSampler's."""
    if not unknown:
        return
    inherited = sorted(k for k in unknown if k in _BASE_SAMPLER_KEYS)
    if inherited:
        raise ArgumentError(
            f'train_dataloader.sampler: {sampler} got {inherited}, inherited '
            "from the base config's sampler (a DefaultSampler), because the "
            'config merged its sampler into the base one; write '
            f"train_dataloader = dict(sampler=dict(_delete_=True, "
            f"type='{sampler}', ...)) to replace it.")
    raise ArgumentError(f'{sampler} got unexpected arguments '
                        f'{sorted(unknown)}')


@DATA_SAMPLERS.register_module()
class EquityWeightedSampler(Sampler):
    """Weighted sampling with replacement, P(index i) proportional to W_i.

    Distributed: every rank draws the same global sequence (same seed and
    epoch) and takes its own stride of it, like mmengine's DefaultSampler, so
    the ranks' k-th batches together are the k-th batch of one process with
    the global batch size.

    Args:
        dataset: the train dataset; it must contain an EquityDataset (it may
            be the dataset itself or wrapped by RepeatDataset / CBGSDataset).
        loss (dict): the GeneralizedFocalLoss that turns p into W (eta,
            gamma); ``terms`` must be 'all' and ``normalisation`` 'dataset'
            (sampling weights whole samples, and proportional sampling
            realises the W-weighted loss divided by its mean). Defaults to
            the paper's eta=1, gamma=5.
        seed (int, optional): synchronised across ranks when None.
        num_samples (int, optional): draws per epoch over all ranks;
            defaults to ``len(dataset)``.
    """

    def __init__(self, dataset,
                 loss: dict = dict(type='GeneralizedFocalLoss',
                                   normalisation='dataset'),
                 seed: Optional[int] = None,
                 num_samples: Optional[int] = None, **unknown) -> None:
        from mmdet3d_equity.models.losses import GeneralizedFocalLoss
        refuse_base_sampler_keys('EquityWeightedSampler', unknown)
        if not isinstance(loss, dict) or 'type' not in loss:
            raise TypeError(
                'EquityWeightedSampler.loss must be a config dict like '
                "dict(type='GeneralizedFocalLoss', eta=1.0, gamma=5.0, "
                f"normalisation='dataset'), got {loss!r}")
        self.gfl = MODELS.build(loss)
        if not isinstance(self.gfl, GeneralizedFocalLoss):
            raise TypeError(
                'EquityWeightedSampler.loss must build a '
                f'GeneralizedFocalLoss, got {type(self.gfl).__name__}')
        if self.gfl.terms != 'all':
            raise ValueError(
                'EquityWeightedSampler: resampling weights whole samples, so '
                f'GeneralizedFocalLoss.terms must be \'all\', got '
                f'{self.gfl.terms!r}; weight single terms with the EquityHook '
                'instead')
        if self.gfl.normalisation != 'dataset':
            raise ValueError(
                'EquityWeightedSampler: drawing index i with probability '
                'W_i / sum_j W_j realises the W-weighted loss divided by its '
                "training-set mean, i.e. normalisation='dataset'; set it in "
                'the sampler\'s loss (got '
                f'normalisation={self.gfl.normalisation!r})')
        equity = find_equity_dataset(dataset)
        if equity is None:
            raise ValueError(
                'EquityWeightedSampler needs an EquityDataset in the train '
                'dataset (train_dataloader.dataset = dict(type='
                "'EquityDataset', likelihood_file=..., dataset=...))")
        rank, world_size = get_dist_info()
        self.rank, self.world_size = rank, world_size
        self.dataset = dataset
        self.equity = equity
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.weights = torch.as_tensor(
            self.gfl.raw_weight(equity.index_likelihoods(dataset)),
            dtype=torch.float64)
        if self.weights.numel() != len(dataset):
            raise RuntimeError('EquityWeightedSampler: one weight per index '
                               'of the train dataset expected')
        total = len(dataset) if num_samples is None else int(num_samples)
        if total <= 0:
            raise ValueError(f'num_samples must be > 0, got {num_samples}')
        self.epoch_draws = total  # over all ranks, before padding
        self.num_samples = math.ceil(total / world_size)
        self.total_size = self.num_samples * world_size
        self.epoch = 0
        equity.claim('sampling', 'EquityWeightedSampler')
        msg, level = weight_report('EquityWeightedSampler', self.weights,
                                   self.gfl)
        print_log(f'EquityWeightedSampler: resampling mode: {total} draws an '
                  f'epoch ({self.num_samples} per rank, {world_size} '
                  f'rank(s)) of the {len(dataset)} train indices with '
                  f'probability W_i / sum W (GeneralizedFocalLoss '
                  f'eta={self.gfl.eta}, gamma={self.gfl.gamma}, '
                  f"terms='all', normalisation='dataset'), with replacement, "
                  f'seed {self.seed}; no loss weighting. '
                  + msg.split(': ', 1)[1], 'current', level)

    def identity(self) -> dict:
        """What determines the draws (EquitySamplingHook saves it in
        checkpoints): the weighting and the likelihood file's content."""
        return dict(sampler='EquityWeightedSampler', eta=self.gfl.eta,
                    gamma=self.gfl.gamma, terms=self.gfl.terms,
                    normalisation=self.gfl.normalisation,
                    num_samples=self.epoch_draws,
                    likelihood_content=self.equity.content_fingerprint,
                    strict=self.equity.strict, missing=self.equity.missing)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        draws = torch.multinomial(self.weights, self.total_size,
                                  replacement=True, generator=g)
        return iter(draws[self.rank:self.total_size:self.world_size].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
