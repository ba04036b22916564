"""Repeat-factor sampling of rare-looking frames.

The way repeat-factor sampling (LVIS, Gupta et al. 2019; mmengine's
``ClassBalancedDataset``) treats rare classes, applied to the appearance
likelihood p_i of DatasetEquity: frame i is repeated

    r_i = max(1, sqrt(t / p_i))

times per epoch, with the threshold t documented below. No loss weighting;
use it instead of EquityHook's loss weighting or EquityWeightedSampler,
never together (refused through EquityDataset's claims).

Repeat factors are not whole numbers. LVIS rounds them stochastically and
mmengine's ClassBalancedDataset rounds them up (a frame with r = 1.01 is
seen twice); both change the epoch length from epoch to epoch (LVIS) or
inflate it (mmengine). This sampler keeps the epoch at exactly
``L = ceil(R)`` indices, R = sum_i r_i, by scaling the factors by L / R
(at most 1 + 1/R) and rounding them with systematic sampling: the frames
are visited in a random order with cumulative factor sums C_i; with one
uniform offset u in [0, 1) frame i is drawn once for every point u + k
(k integer) in [C_{i-1}, C_i). Every frame is drawn floor(r_i L / R) or
ceil(r_i L / R) times, exactly r_i L / R times in expectation, and the
epoch has exactly L draws. The draws are shuffled.
"""
import math
from typing import Iterator, Optional

import numpy as np
import torch
from mmdet3d.registry import DATA_SAMPLERS
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import print_log
from torch.utils.data import Sampler

from .equity_dataset import find_equity_dataset
from .equity_sampler import refuse_base_sampler_keys

#: The default threshold t. p_i is the frame's appearance cluster size over
#: the largest cluster's (1 for the most common appearance), so frames whose
#: appearance is less than half as common as the most common one are
#: repeated: p = 0.5 -> r = 1, p = 0.125 -> r = 2, p = 0.02 -> r = 5.
DEFAULT_THRESHOLD = 0.5


def repeat_factors(likelihoods, threshold: float) -> np.ndarray:
    """r_i = max(1, sqrt(threshold / p_i)) for likelihoods p in (0, 1]."""
    if isinstance(threshold, bool) or \
            not isinstance(threshold, (int, float)) or \
            not 0.0 < float(threshold) <= 1.0:
        raise ValueError(
            'EquityRepeatFactorSampler: threshold must be a number in '
            f'(0, 1], got {threshold!r}; frames with likelihood p < '
            f'threshold are repeated sqrt(threshold / p) times (default '
            f'{DEFAULT_THRESHOLD})')
    p = np.asarray(likelihoods, dtype=np.float64)
    if p.ndim != 1 or not np.all(np.isfinite(p)) or np.any(p <= 0) or \
            np.any(p > 1):
        raise ValueError(
            'EquityRepeatFactorSampler: likelihoods must be finite and in '
            '(0, 1], one per train index; check the likelihood file')
    return np.maximum(1.0, np.sqrt(float(threshold) / p))


def epoch_counts(factors, length: int, rng: np.random.Generator
                 ) -> np.ndarray:
    """Per-index draw counts of one epoch: systematic sampling of the
    factors scaled to sum to ``length`` (module docstring)."""
    r = np.asarray(factors, dtype=np.float64)
    scaled = r * (length / r.sum())
    order = rng.permutation(len(r))
    cum = np.concatenate([[0.0], np.cumsum(scaled[order])])
    cum[-1] = float(length)           # exact total despite rounding
    u = rng.random()
    hits = np.ceil(cum - u)           # points u + k below each cumsum
    counts = np.empty(len(r), dtype=np.int64)
    counts[order] = np.diff(hits).astype(np.int64)
    return counts


@DATA_SAMPLERS.register_module()
class EquityRepeatFactorSampler(Sampler):
    """Repeat every train frame r_i = max(1, sqrt(t / p_i)) times an epoch.

    Distributed: every rank builds the same global epoch (same seed and
    epoch), padded by wrapping to a multiple of the world size, and takes
    its own stride of it, like mmengine's DefaultSampler.

    Args:
        dataset: the train dataset; it must contain an EquityDataset (it may
            be the dataset itself or wrapped by RepeatDataset / CBGSDataset).
        threshold (float): t in (0, 1]; frames with p_i < t are repeated
            (default :data:`DEFAULT_THRESHOLD`).
        seed (int, optional): synchronised across ranks when None.
    """

    def __init__(self, dataset, threshold: float = DEFAULT_THRESHOLD,
                 seed: Optional[int] = None, **unknown) -> None:
        refuse_base_sampler_keys('EquityRepeatFactorSampler', unknown)
        equity = find_equity_dataset(dataset)
        if equity is None:
            raise ValueError(
                'EquityRepeatFactorSampler needs an EquityDataset in the '
                'train dataset (train_dataloader.dataset = dict(type='
                "'EquityDataset', likelihood_file=..., dataset=...))")
        self.factors = repeat_factors(equity.index_likelihoods(dataset),
                                      threshold)
        self.threshold = float(threshold)
        if len(self.factors) != len(dataset):
            raise RuntimeError('EquityRepeatFactorSampler: one likelihood '
                               'per index of the train dataset expected')
        rank, world_size = get_dist_info()
        self.rank, self.world_size = rank, world_size
        self.dataset = dataset
        self.equity = equity
        self.seed = sync_random_seed() if seed is None else int(seed)
        #: draws per epoch over all ranks, before padding
        self.epoch_length = int(math.ceil(self.factors.sum() - 1e-9))
        self.num_samples = math.ceil(self.epoch_length / world_size)
        self.total_size = self.num_samples * world_size
        self.epoch = 0
        equity.claim('sampling', 'EquityRepeatFactorSampler')
        r = self.factors
        print_log(f'EquityRepeatFactorSampler: repeat-factor mode: '
                  f'{self.epoch_length} draws an epoch ({self.num_samples} '
                  f'per rank, {world_size} rank(s)) of the {len(r)} train '
                  f'indices, index i repeated r_i = max(1, sqrt('
                  f'{self.threshold} / p_i)) times (mean {r.mean():.4f}, max '
                  f'{r.max():.4f}; {int((r > 1).sum())} of {len(r)} indices '
                  f'repeated), seed {self.seed}; no loss weighting',
                  'current')

    def identity(self) -> dict:
        """What determines the repeats (EquitySamplingHook saves it in
        checkpoints): the threshold and the likelihood file's content."""
        return dict(sampler='EquityRepeatFactorSampler',
                    threshold=self.threshold,
                    likelihood_content=self.equity.content_fingerprint,
                    strict=self.equity.strict, missing=self.equity.missing)

    def counts(self, epoch: Optional[int] = None) -> np.ndarray:
        """Draws of every index in ``epoch`` (default: the current one)."""
        e = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, e])
        return epoch_counts(self.factors, self.epoch_length, rng)

    def __iter__(self) -> Iterator[int]:
        e = self.epoch
        counts = self.counts(e)
        idx = np.repeat(np.arange(len(counts)), counts)
        g = torch.Generator()
        g.manual_seed(self.seed + e)
        idx = idx[torch.randperm(len(idx), generator=g).numpy()].tolist()
        idx = (idx * math.ceil(self.total_size / len(idx)))[:self.total_size]
        return iter(idx[self.rank:self.total_size:self.world_size])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
