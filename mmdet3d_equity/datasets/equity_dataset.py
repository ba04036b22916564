"""EquityDataset: attach DatasetEquity likelihoods to training samples.

A wrapper like mmdet3d's ``CBGSDataset``: it builds the train dataset (any
config, inside or around the standard wrappers), loads a likelihood file
(:mod:`mmdet3d_equity.utils.likelihood_file`), checks that the file belongs
to this data (sample ids, data root, info file and the samples' point-cloud
files) and that every point cloud can be read, and puts ``equity_likelihood``
(the sample's p) and ``equity_id`` into the metainfo of every packed
``Det3DDataSample``.

It carries p only: the GeneralizedFocalLoss of the EquityHook (loss
weighting) or a sampler (``EquityWeightedSampler``,
``EquityRepeatFactorSampler``) turns p into weights and claims the wrapper
(:meth:`EquityDataset.claim`) when training starts: the hook in its
``before_train``, a sampler when it is built. A wrapper that nothing claims
refuses to serve a sample, since training would be the stock baseline.

The likelihood is looked up by the identity of the sample actually returned
(``token`` if packed, else the packed ``sample_idx`` -- the list position,
which mmengine's ``get_data_info`` writes -- mapped to the identity stored in
the info), never by the wrapper index: BaseDataset refetches another index
when a pipeline drops a sample. Identities are strings (KITTI frame 7 is
``'7'``). Wrappers are walked through :mod:`mmdet3d_equity.utils.identity`.
"""
from typing import Dict, List, Mapping, Union

import numpy as np
from mmdet3d.registry import DATASETS
from mmengine.logging import print_log

from mmdet3d_equity.utils import (
    check_point_files,
    find_datasets,
    index_identities,
    leaf_datasets,
    load_likelihood_file,
    raw_data_info,
    sample_identity,
)
from mmdet3d_equity.utils.binding import (
    MISSING_POLICIES,
    check_same_data,
    likelihood_table,
)
from mmdet3d_equity.utils.errors import ConfigError
from mmdet3d_equity.utils.identity import lidar_path

CLAIM_KINDS = ('loss', 'sampling', 'inspection')
WEIGHT_OWNER_HELP = (
    "custom_hooks = [dict(type='EquityHook', loss=dict("
    "type='GeneralizedFocalLoss', eta=1.0, gamma=5.0))] (loss weighting), "
    "or train_dataloader.sampler = dict(type='EquityWeightedSampler', "
    "loss=dict(type='GeneralizedFocalLoss', eta=1.0, gamma=5.0, "
    "normalisation='dataset')) (resampling)")
_MOVED = ('eta', 'gamma', 'equity_weight', 'normalisation', 'terms')


def find_equity_dataset(dataset):
    """The EquityDataset inside ``dataset`` (itself or nested), or None."""
    found = find_datasets(dataset, EquityDataset)
    if len(found) > 1:
        raise ConfigError(f'found {len(found)} EquityDataset wrappers in the '
                          'train dataset; wrap the whole train dataset once')
    return found[0] if found else None


def _load_dim(leaf):
    """load_dim of the leaf's local LoadPointsFromFile, else None."""
    for t in getattr(getattr(leaf, 'pipeline', None), 'transforms', []):
        if type(t).__name__ == 'LoadPointsFromFile' and \
                not getattr(t, 'backend_args', None):
            return int(t.load_dim)
    return None


@DATASETS.register_module()
class EquityDataset:
    """Wrap a train dataset and attach DatasetEquity likelihoods.

    Args:
        dataset (dict | dataset): the train dataset (config) to wrap.
        likelihood_file (str): file written by ``tools/compute_likelihoods.py``
            for this training split.
        strict (bool): require the file to belong to this data: the same
            sample ids (fingerprint), and the same sample content (or, for
            files without it, data root and info file). ``False`` logs a
            mismatch and goes on when every sample is covered (see
            ``missing``). Defaults to True.
        missing (str): samples without a likelihood in the file: ``'error'``
            (default), ``'max_weight'`` (p = 0, the largest weight) or
            ``'min_weight'`` (p = 1); any but 'error' needs ``strict=False``
            and is logged with the number of samples.

    eta, gamma and the normalisation belong to the GeneralizedFocalLoss that
    applies p (EquityHook or EquityWeightedSampler), not to the wrapper.
    """

    def __init__(self, dataset: Union[dict, object], likelihood_file: str,
                 strict: bool = True, missing: str = 'error',
                 **unknown) -> None:
        moved = sorted(k for k in unknown if k in _MOVED)
        if moved:
            raise TypeError(
                f'EquityDataset does not take {moved}: the dataset carries '
                'the likelihood p only; eta, gamma and the normalisation are '
                f'set in the GeneralizedFocalLoss that applies them: '
                f'{WEIGHT_OWNER_HELP}. Remove {moved} from '
                'train_dataloader.dataset.')
        if unknown:
            raise TypeError(f'EquityDataset got unexpected arguments '
                            f'{sorted(unknown)}; it takes dataset, '
                            'likelihood_file, strict and missing')
        if missing not in MISSING_POLICIES:
            raise ValueError(f'EquityDataset: missing must be one of '
                             f'{MISSING_POLICIES}, got {missing!r}')
        if missing != 'error' and strict:
            raise ValueError(
                f'EquityDataset: missing={missing!r} only applies when the '
                'file may cover other samples than the dataset; set '
                'strict=False as well')
        self.strict, self.missing = bool(strict), missing
        self.likelihood_file = likelihood_file
        self._claims: Dict[str, str] = {}
        self.dataset = DATASETS.build(dataset) if isinstance(
            dataset, Mapping) else dataset
        leaves = leaf_datasets(self.dataset)
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
        self._by_position: Dict[str, str] = {}
        self._points: Dict[int, Dict[str, str]] = {}
        self._leaf_set: set = set()  # the split, whatever CBGS drew
        self._index_ids = index_identities(self.dataset, self._leaf_ids)
        self._likelihood = likelihood_table(
            record, self._leaf_set, likelihood_file, strict, missing)
        p = self.index_likelihoods()
        print_log(f'EquityDataset: {len(self._likelihood)} samples ({len(p)} '
                  f'indices) from {likelihood_file}: p mean {p.mean():.4f}, '
                  f'min {p.min():.4f}, max {p.max():.4f}', 'current')
        check_same_data(record, self.dataset,
                        vars(leaves[0]) if len(leaves) == 1 else {},
                        likelihood_file, strict)
        for load_dim, paths in self._points.items():
            check_point_files(paths, load_dim, 'of the train samples '
                              f'(likelihood file {likelihood_file})')

    # -- checks ---------------------------------------------------------
    def _leaf_ids(self, leaf) -> np.ndarray:
        """Identities of a leaf, recording position -> identity and the
        point-cloud files (see index_identities)."""
        load_dim = _load_dim(leaf)
        ids = np.empty(len(leaf), dtype=object)
        for i in range(len(leaf)):
            info = raw_data_info(leaf, i)
            ids[i] = ident = sample_identity(info)
            key = str(leaf.get_data_info(i).get('sample_idx', i))
            if self._by_position.setdefault(key, ident) != ident:
                raise ConfigError(
                    f'EquityDataset: sample_idx {key!r} names two samples '
                    f'({self._by_position[key]!r} and {ident!r}), e.g. in a '
                    'ConcatDataset, so a packed sample cannot be identified; '
                    "add 'token' to Pack3DDetInputs' meta_keys (if the infos "
                    'have tokens) or give the datasets distinct sample_idx.')
            if load_dim is not None and lidar_path(info):
                self._points.setdefault(load_dim, {})[ident] = \
                    lidar_path(info)
        self._leaf_set.update(ids.tolist())
        return ids

    # -- who applies the likelihoods --------------------------------------
    def claim(self, kind: str, owner: str) -> None:
        """Record what applies the likelihoods: ``'loss'`` (EquityHook),
        ``'sampling'`` (a sampler) or ``'inspection'`` (reading samples
        outside training). Loss weighting and resampling together, or two
        loss owners, would apply W twice: refused."""
        if kind not in CLAIM_KINDS:
            raise ValueError(f'EquityDataset.claim: kind must be one of '
                             f'{CLAIM_KINDS}, got {kind!r}')
        if {kind, *self._claims} >= {'loss', 'sampling'}:
            loss = owner if kind == 'loss' else self._claims['loss']
            raise ConfigError(
                f'EquityDataset: {loss} (loss weighting) and the '
                f"{self._claims.get('sampling', owner)} (resampling) would "
                'both apply W, i.e. twice. Use one: remove the EquityHook '
                '(resampling mode) or the sampler (loss weighting mode).')
        prev = self._claims.get(kind)
        if kind == 'loss' and prev is not None and prev != owner:
            raise ConfigError(
                f'EquityDataset: two loss owners ({prev} and {owner}) would '
                'each weight the loss by W; configure one EquityHook.')
        self._claims[kind] = str(owner)

    def release(self, kind: str, owner: str) -> None:
        """Undo :meth:`claim` (the EquityHook releases after training)."""
        if self._claims.get(kind) == str(owner):
            del self._claims[kind]

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
            index_identities(dataset)
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
            return self._by_position[str(meta['sample_idx'])]
        except KeyError:
            raise KeyError(f'EquityDataset: the returned sample has '
                           f"sample_idx {str(meta['sample_idx'])!r}, which "
                           'is no sample of the wrapped dataset') from None

    # -- dataset protocol -------------------------------------------------
    def __getitem__(self, idx: int) -> dict:
        if not self._claims:
            raise RuntimeError(
                'EquityDataset: nothing applies the likelihoods this wrapper '
                'attaches, so training would silently be the stock baseline. '
                f'Add what applies them: {WEIGHT_OWNER_HELP}. (To read '
                "samples outside training, call dataset.claim('inspection', "
                "'<your name>') first.)")
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
