"""EquityDataset: attach DatasetEquity likelihoods to training samples.

A wrapper like mmdet3d's ``CBGSDataset``. It builds the train dataset, loads
a likelihood file, checks that the file belongs to this data (sample ids,
data root, info file, point-cloud files: :mod:`mmdet3d_equity.utils.binding`)
and that every point cloud can be read, and puts ``equity_likelihood`` (p)
and ``equity_id`` into the metainfo of every packed ``Det3DDataSample``,
looked up by the identity of the sample actually returned (BaseDataset
refetches another index when a pipeline drops a sample). Wrappers inside
and around it are walked through :mod:`mmdet3d_equity.utils.identity`.

It carries p only: the EquityHook (loss weighting) or a sampler turns p
into weights and claims the wrapper when training starts (the hook in
``before_train``, a sampler when built); unclaimed, it serves no sample,
since training would be the stock baseline.
"""
from typing import List, Mapping, Union

import numpy as np
from mmdet3d.registry import DATASETS
from mmengine.logging import print_log

from mmdet3d_equity.utils import binding, identity
from mmdet3d_equity.utils.errors import ArgumentError, ConfigError
from mmdet3d_equity.utils.likelihood_file import load_likelihood_file
from mmdet3d_equity.utils.point_files import check_point_files, points_load_dim

WEIGHT_OWNER_HELP = binding.WEIGHT_OWNER_HELP
_MOVED = ('eta', 'gamma', 'equity_weight', 'normalisation', 'terms')


def find_equity_dataset(dataset):
    """The EquityDataset inside ``dataset`` (itself or nested), or None."""
    found = identity.find_datasets(dataset, EquityDataset)
    if len(found) > 1:
        raise ConfigError(f'found {len(found)} EquityDataset wrappers in the '
                          'train dataset; wrap the whole train dataset once')
    return found[0] if found else None


@DATASETS.register_module()
class EquityDataset:
    """Wrap a train dataset and attach DatasetEquity likelihoods.

    Args:
        dataset (dict | dataset): the train dataset (config) to wrap.
        likelihood_file (str): file written by ``tools/compute_likelihoods.py``
            for this training split.
        strict (bool): require the file to belong to this data (same sample
            ids, same content). ``False`` logs a mismatch and goes on when
            every sample is covered (see ``missing``). Defaults to True.
        missing (str): samples without a likelihood: ``'error'`` (default),
            ``'max_weight'`` (p = 0) or ``'min_weight'`` (p = 1); any but
            'error' needs ``strict=False`` and is logged.

    eta, gamma and the normalisation belong to the GeneralizedFocalLoss that
    applies p (EquityHook or EquityWeightedSampler), not to the wrapper.
    """

    def __init__(self, dataset: Union[dict, object], likelihood_file: str,
                 strict: bool = True, missing: str = 'error',
                 **unknown) -> None:
        moved = sorted(k for k in unknown if k in _MOVED)
        if unknown:
            raise ArgumentError(
                f'EquityDataset does not take {moved}: the dataset carries '
                'the likelihood p only; eta, gamma and the normalisation are '
                'set in the GeneralizedFocalLoss that applies them: '
                f'{WEIGHT_OWNER_HELP}. Remove {moved} from '
                'train_dataloader.dataset.' if moved else
                f'EquityDataset got unexpected arguments {sorted(unknown)}; '
                'it takes dataset, likelihood_file, strict and missing')
        if missing not in binding.MISSING_POLICIES:
            raise ValueError(f'EquityDataset: missing must be one of '
                             f'{binding.MISSING_POLICIES}, got {missing!r}')
        if missing != 'error' and strict:
            raise ValueError(
                f'EquityDataset: missing={missing!r} only applies when the '
                'file may cover other samples than the dataset; set '
                'strict=False as well')
        self.strict, self.missing = bool(strict), missing
        self.likelihood_file = likelihood_file
        self._claims = binding.Claims()
        self.dataset = DATASETS.build(dataset) if isinstance(
            dataset, Mapping) else dataset
        leaves = identity.leaf_datasets(self.dataset)
        evals = [leaf for leaf in leaves if getattr(leaf, 'test_mode', False)]
        if evals:
            raise ConfigError(
                'EquityDataset wraps a dataset with test_mode=True (the '
                'val/test split, info file '
                f"{getattr(evals[0], 'ann_file', '?')!r}): EquityDataset "
                'weights training samples and belongs around '
                'train_dataloader.dataset only; remove it from '
                'val_dataloader / test_dataloader.')
        record = load_likelihood_file(likelihood_file)
        self.content_fingerprint = record['content_fingerprint']
        self._by_packed, self._points, leaf_ids = {}, {}, set()

        def leaf_table(leaf):  # index_identities' view of one leaf
            rows = identity.leaf_samples(leaf)
            load_dim = points_load_dim(leaf)
            for packed, ident, path in rows:
                if self._by_packed.setdefault(packed, ident) != ident:
                    raise ConfigError(
                        f'EquityDataset: sample_idx {packed!r} names two '
                        f'samples ({self._by_packed[packed]!r} and '
                        f'{ident!r}), e.g. in a ConcatDataset; add \'token\' '
                        "to Pack3DDetInputs' meta_keys (if the infos have "
                        'tokens) or give the datasets distinct sample_idx.')
                if load_dim is not None and path:
                    self._points.setdefault(load_dim, {})[ident] = path
            leaf_ids.update(r[1] for r in rows)
            return np.array([r[1] for r in rows], dtype=object)

        self._index_ids = identity.index_identities(self.dataset, leaf_table)
        self._likelihood = binding.likelihood_table(
            record, leaf_ids, likelihood_file, strict, missing)
        p = self.index_likelihoods()
        print_log(f'EquityDataset: {len(leaf_ids)} samples ({len(p)} '
                  f'indices) from {likelihood_file}: p mean {p.mean():.4f}, '
                  f'min {p.min():.4f}, max {p.max():.4f}', 'current')
        binding.check_same_data(record, self.dataset,
                                vars(leaves[0]) if len(leaves) == 1 else {},
                                likelihood_file, strict)
        for load_dim, paths in self._points.items():
            check_point_files(paths, load_dim, 'of the train samples '
                              f'(likelihood file {likelihood_file})')

    def claim(self, kind: str, owner: str) -> None:
        """Record what applies p (:class:`~mmdet3d_equity.utils.binding.
        Claims`): ``'loss'``, ``'sampling'`` or ``'inspection'``."""
        self._claims.claim(kind, owner)

    def release(self, kind: str, owner: str) -> None:
        """Undo :meth:`claim` (the EquityHook releases after training)."""
        self._claims.release(kind, owner)

    # -- lookups --------------------------------------------------------
    def likelihood_of(self, identity) -> float:
        """p of a sample identity (``str()``-normalised)."""
        try:
            return self._likelihood[str(identity)]
        except KeyError:
            raise KeyError(f'EquityDataset: sample {str(identity)!r} is not '
                           'a sample of the wrapped dataset (likelihood file '
                           f'{self.likelihood_file})') from None

    def index_likelihoods(self, dataset=None) -> np.ndarray:
        """p per index of ``dataset`` (default: this wrapper), which may be
        an outer wrapper (RepeatDataset, CBGSDataset) around this one."""
        ids = self._index_ids if dataset in (None, self) else \
            identity.index_identities(dataset)
        return np.array([self.likelihood_of(i) for i in ids.tolist()],
                        dtype=np.float64)

    def identity_of_packed(self, data_sample) -> str:
        meta = data_sample.metainfo
        if meta.get('token') is not None:
            return str(meta['token'])
        if meta.get('sample_idx') is None:
            raise KeyError(
                'EquityDataset: the packed data sample has neither "token" '
                'nor "sample_idx" in its metainfo; keep \'sample_idx\' in '
                "Pack3DDetInputs' meta_keys (it is in the default).")
        try:
            return self._by_packed[str(meta['sample_idx'])]
        except KeyError:
            raise KeyError(f'EquityDataset: the returned sample has '
                           f"sample_idx {str(meta['sample_idx'])!r}, which "
                           'is no sample of the wrapped dataset') from None

    # -- dataset protocol -------------------------------------------------
    def __getitem__(self, idx: int) -> dict:
        self._claims.require()
        data = self.dataset[idx]
        samples = data.get('data_samples') if isinstance(data, dict) else None
        if not hasattr(samples, 'set_metainfo'):
            raise TypeError(
                'EquityDataset: the wrapped pipeline must end with '
                'Pack3DDetInputs (a dict with a Det3DDataSample under '
                f'"data_samples"), got {type(samples).__name__}')
        ident = self.identity_of_packed(samples)
        samples.set_metainfo(dict(equity_id=ident,
                                  equity_likelihood=self.likelihood_of(ident)))
        return data

    def wrapped_indices(self) -> list:
        """Index i is index i of the wrapped dataset (utils.identity)."""
        return [(self.dataset, np.arange(len(self.dataset)))]

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def full_init(self) -> None:
        """Everything is initialised (and validated) in ``__init__``."""

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def get_cat_ids(self, idx: int) -> List[int]:
        return self.dataset.get_cat_ids(idx)

    def __getattr__(self, name):
        # other attributes (pipeline, data_root, ...) pass through
        if name.startswith('__') or name in ('dataset', '_likelihood',
                                             '_index_ids', '_claims'):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return (f'EquityDataset(likelihood_file={self.likelihood_file!r}, '
                f'strict={self.strict}, missing={self.missing!r}, dataset='
                f'{type(self.dataset).__name__} of {len(self)} indices)')
