"""EquityDataset: attach DatasetEquity likelihoods/weights to training samples.

The wrapper

* builds any train dataset config (a plain dataset, ``RepeatDataset``,
  ``CBGSDataset``, ``ClassBalancedDataset``, ``ConcatDataset``; it may itself
  sit inside those wrappers),
* loads a likelihood file (:mod:`mmdet3d_equity.scoring.likelihood_file`) and
  validates it against the dataset's own sample identities (fingerprint and
  coverage) in ``__init__``, i.e. when the runner builds the dataloader,
  before any worker forks,
* and puts ``equity_likelihood``, ``equity_weight`` (W(p; eta, gamma), not
  normalised) and ``equity_id`` into the metainfo of every packed
  ``Det3DDataSample``.

The likelihood is looked up by the identity of the sample that is actually
returned (``token`` if the packed metainfo has one, else its ``sample_idx``
-- which mmengine's ``get_data_info`` sets to the list position -- mapped
back to the identity stored in the info: the KITTI frame number, as the
scorer records it), never by the wrapper index: BaseDataset refetches a
random index when a pipeline drops a sample.

``metainfo``, ``get_data_info``, ``get_cat_ids`` and ``len`` pass through, so
evaluation, visualisation and ``CBGSDataset`` work unchanged.
"""
import logging
import os.path as osp
from typing import Dict, List, Mapping, Optional, Union

import numpy as np
from mmengine.logging import print_log

from mmdet3d.registry import DATASETS
from mmdet3d_equity.models.losses.equity_weight import equity_weight
from mmdet3d_equity.scoring import (LikelihoodFileError, dataset_fingerprint,
                                    likelihood_map, load_likelihood_file,
                                    dataset_sample_identity)

MISSING_POLICIES = ('error', 'max_weight', 'min_weight')
# the likelihood used for an id absent from the file under each policy
_MISSING_P = {'max_weight': 0.0, 'min_weight': 1.0}


def _build(dataset):
    if isinstance(dataset, Mapping):
        return DATASETS.build(dataset)
    return dataset


def _class_name(obj) -> str:
    return type(obj).__name__


def index_identity_table(dataset, sample_idx_map: Optional[Dict] = None,
                         leaf_ids: Optional[set] = None) -> np.ndarray:
    """Identity (str) of the sample at every index of ``dataset``.

    Walks the standard wrappers without loading data; a leaf dataset is
    asked for ``get_data_info(i)``. ``sample_idx_map`` (if given) collects
    ``str(info['sample_idx']) -> identity`` of the leaf infos and raises when
    one sample_idx would name two different samples; ``leaf_ids`` collects
    the identities of all leaf samples (the split, whatever a CBGSDataset
    happened to draw).
    """
    name = _class_name(dataset)
    if name == 'EquityDataset':
        return index_identity_table(dataset.dataset, sample_idx_map, leaf_ids)
    if name == 'RepeatDataset':
        inner = index_identity_table(dataset.dataset, sample_idx_map,
                                     leaf_ids)
        return np.tile(inner, int(dataset.times))
    if name == 'CBGSDataset':
        inner = index_identity_table(dataset.dataset, sample_idx_map, leaf_ids)
        return inner[np.asarray(dataset.sample_indices, dtype=np.int64)]
    if name == 'ClassBalancedDataset':
        inner = index_identity_table(dataset.dataset, sample_idx_map, leaf_ids)
        return inner[np.asarray(dataset.repeat_indices, dtype=np.int64)]
    if name == 'ConcatDataset':
        return np.concatenate([
            index_identity_table(d, sample_idx_map, leaf_ids)
            for d in dataset.datasets
        ])
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    ids = np.empty(len(dataset), dtype=object)
    for i in range(len(dataset)):
        # get_data_info sets info['sample_idx'] to the position i (that is
        # what the packed sample carries); the identity is read from the
        # stored info (KITTI: the frame number), as the scorer does.
        info = dataset.get_data_info(i)
        ident = dataset_sample_identity(dataset, i)
        ids[i] = ident
        if leaf_ids is not None:
            leaf_ids.add(ident)
        if sample_idx_map is not None and info.get('sample_idx') is not None:
            key = str(info['sample_idx'])
            prev = sample_idx_map.setdefault(key, ident)
            if prev != ident:
                raise ValueError(
                    f'EquityDataset: sample_idx {key!r} names two different '
                    f'samples ({prev!r} and {ident!r}), e.g. in a '
                    'ConcatDataset of two datasets; the packed sample could '
                    "not be identified. Add 'token' to Pack3DDetInputs' "
                    'meta_keys (if the infos have tokens) or give the '
                    'datasets distinct sample_idx values.')
    return ids


def find_equity_dataset(dataset) -> Optional['EquityDataset']:
    """The EquityDataset inside ``dataset`` (itself or nested), or None."""
    found = []

    def walk(ds):
        if isinstance(ds, EquityDataset):
            found.append(ds)
            return
        if hasattr(ds, 'datasets'):
            for d in ds.datasets:
                walk(d)
        elif hasattr(ds, 'dataset'):
            walk(ds.dataset)

    walk(dataset)
    if len(found) > 1:
        raise ValueError(
            f'found {len(found)} EquityDataset wrappers in the train '
            'dataset; wrap the whole train dataset once')
    return found[0] if found else None


@DATASETS.register_module()
class EquityDataset:
    """Wrap a train dataset and attach DatasetEquity likelihoods / weights.

    Args:
        dataset (dict | dataset): the train dataset (config) to wrap.
        likelihood_file (str): file written by
            ``tools/compute_likelihoods.py`` for this training split.
        eta (float): W(p) parameter, must equal the loss's (checked by
            EquityHook). Defaults to 1.0.
        gamma (float): W(p) parameter, must equal the loss's. Defaults to 5.0.
        strict (bool): require the file's dataset fingerprint to equal the
            fingerprint of this dataset's sample identities (same split, same
            filtering). ``False`` accepts another fingerprint (logged) as long
            as every sample is covered (see ``missing``). Defaults to True.
        missing (str): samples of the dataset without a likelihood in the
            file: ``'error'`` (default), ``'max_weight'`` (treated as the
            rarest appearance, p = 0, W = 1) or ``'min_weight'`` (treated as
            the most common, p = 1). Any policy but 'error' requires
            ``strict=False`` and is logged with the number of samples.
    """

    def __init__(self,
                 dataset: Union[dict, object],
                 likelihood_file: str,
                 eta: float = 1.0,
                 gamma: float = 5.0,
                 strict: bool = True,
                 missing: str = 'error') -> None:
        equity_weight(0.5, eta, gamma)  # validates eta / gamma
        if missing not in MISSING_POLICIES:
            raise ValueError(f'EquityDataset: missing must be one of '
                             f'{MISSING_POLICIES}, got {missing!r}')
        if missing != 'error' and strict:
            raise ValueError(
                f"EquityDataset: missing={missing!r} only applies when the "
                'file may cover other samples than the dataset; set '
                'strict=False as well (a file with a matching fingerprint '
                'covers every sample)')
        if not isinstance(likelihood_file, str) or not likelihood_file:
            raise ValueError('EquityDataset: likelihood_file must be the path '
                             'of a likelihood file, got '
                             f'{likelihood_file!r}')
        self.eta = float(eta)
        self.gamma = float(gamma)
        self.strict = bool(strict)
        self.missing = missing
        self.likelihood_file = likelihood_file

        self.dataset = _build(dataset)
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()
        record = load_likelihood_file(likelihood_file)
        self.record_meta = {
            k: record[k]
            for k in ('id_key', 'fingerprint', 'dataset', 'embedder',
                      'reducer', 'clusterer', 'likelihood_def', 'aggregation',
                      'created')
        }
        self._sample_idx_to_id: Dict[str, str] = {}
        self._leaf_ids: set = set()
        self._index_ids = index_identity_table(self.dataset,
                                               self._sample_idx_to_id,
                                               self._leaf_ids)
        self._likelihood = self._validate(record)
        self._fully_initialized = True

    # ------------------------------------------------------------------
    def _validate(self, record) -> Dict[str, float]:
        path = self.likelihood_file
        ids = self._leaf_ids
        file_map = likelihood_map(record)
        fp = dataset_fingerprint(ids)
        file_ids = set(file_map)
        missing = sorted(ids - file_ids)
        extra = len(file_ids - ids)
        if fp != record['fingerprint']:
            msg = (f'likelihood file {path}: its dataset fingerprint does not '
                   f'match the train dataset ({len(ids)} samples in the '
                   f'dataset, {len(file_ids)} in the file; {len(missing)} '
                   f'dataset samples missing from the file (e.g. '
                   f'{missing[:3]}), {extra} file samples not in the '
                   f'dataset). The file was computed for '
                   f'{record["dataset"]}. Recompute it with '
                   '`tools/compute_likelihoods.py` on this train config, or '
                   'set EquityDataset(strict=False) to accept a file for '
                   'another sample set (missing samples then follow '
                   '`missing`).')
            if self.strict:
                raise LikelihoodFileError(msg)
            print_log(msg + ' Continuing because strict=False.', 'current',
                      logging.WARNING)
        self._check_ann_file(record)
        table = dict(file_map)
        if missing:
            if self.missing == 'error':
                raise LikelihoodFileError(
                    f'likelihood file {path}: {len(missing)} of {len(ids)} '
                    f'train samples have no likelihood (e.g. {missing[:5]}). '
                    'Recompute the file for this dataset, or choose an '
                    "explicit policy: EquityDataset(strict=False, "
                    "missing='max_weight' | 'min_weight').")
            p = _MISSING_P[self.missing]
            print_log(
                f'EquityDataset: {len(missing)} of {len(ids)} train samples '
                f'have no likelihood in {path}; policy '
                f'missing={self.missing!r} gives them p={p} '
                f'(W={equity_weight(p, self.eta, self.gamma):.4f}).',
                'current', logging.WARNING)
            for m in missing:
                table[m] = p
        w = self.index_weights_from(table)
        print_log(
            f'EquityDataset: {len(ids)} samples ({len(self)} indices) from '
            f'{path} (likelihood_def={record["likelihood_def"]!r}, '
            f'clusterer={record["clusterer"].get("type")}); '
            f'eta={self.eta}, gamma={self.gamma}: W mean {w.mean():.4f}, '
            f'min {w.min():.4f}, max {w.max():.4f}', 'current')
        return table

    def _check_ann_file(self, record) -> None:
        # Without tokens (KITTI) mmengine's get_data_info makes sample_idx the
        # position in the info file, so two info files of the same length
        # have the same ids: compare the info file names as well.
        if record['id_key'] != 'sample_idx' or not self.strict:
            return
        leaves = []

        def walk(ds):
            if hasattr(ds, 'datasets'):
                for d in ds.datasets:
                    walk(d)
            elif hasattr(ds, 'dataset'):
                walk(ds.dataset)
            else:
                leaves.append(ds)

        walk(self.dataset)
        rec_ann = (record.get('dataset') or {}).get('ann_file')
        if len(leaves) != 1 or not rec_ann:
            return
        ann = getattr(leaves[0], 'ann_file', None)
        if ann and osp.basename(str(ann)) != osp.basename(str(rec_ann)):
            raise LikelihoodFileError(
                f'likelihood file {self.likelihood_file}: it was computed '
                f'from the info file {rec_ann} but the train dataset reads '
                f'{ann}; sample ids of token-less datasets (KITTI) are '
                'positions in the info file, so they only match for the same '
                'info file. Recompute the likelihoods for this train config '
                'or set EquityDataset(strict=False).')

    def index_weights_from(self, table) -> np.ndarray:
        p = np.fromiter((table[i] for i in self._index_ids.tolist()),
                        dtype=np.float64, count=len(self._index_ids))
        return equity_weight(p, self.eta, self.gamma)

    # -- lookups --------------------------------------------------------
    def likelihood_of(self, identity: str) -> float:
        try:
            return float(self._likelihood[identity])
        except KeyError:
            raise KeyError(
                f'EquityDataset: sample {identity!r} is not a sample of the '
                f'wrapped dataset (likelihood file {self.likelihood_file})'
            ) from None

    def weight_of(self, identity: str) -> float:
        return float(
            equity_weight(self.likelihood_of(identity), self.eta,
                          self.gamma))

    def identities_of(self, dataset=None) -> np.ndarray:
        """Identities per index of ``dataset`` (default: this wrapper)."""
        if dataset is None or dataset is self:
            return self._index_ids
        return index_identity_table(dataset)

    def index_likelihoods(self, dataset=None) -> np.ndarray:
        ids = self.identities_of(dataset)
        return np.array([self.likelihood_of(i) for i in ids.tolist()],
                        dtype=np.float64)

    def index_weights(self, dataset=None) -> np.ndarray:
        """W(p) per index of ``dataset`` (default this wrapper), which may be
        an outer wrapper (RepeatDataset, CBGSDataset) around this one."""
        return equity_weight(self.index_likelihoods(dataset), self.eta,
                             self.gamma)

    def identity_of_packed(self, data_sample) -> str:
        meta = data_sample.metainfo
        if meta.get('token') is not None:
            return str(meta['token'])
        if meta.get('sample_idx') is not None:
            key = str(meta['sample_idx'])
            try:
                return self._sample_idx_to_id[key]
            except KeyError:
                raise KeyError(
                    f'EquityDataset: the returned sample has sample_idx '
                    f'{key!r}, which is no sample of the wrapped dataset'
                ) from None
        raise KeyError(
            'EquityDataset: the packed data sample has neither "token" nor '
            '"sample_idx" in its metainfo, so its likelihood cannot be '
            "looked up; keep 'sample_idx' in Pack3DDetInputs' meta_keys "
            '(it is in the default meta_keys).')

    # -- dataset protocol -------------------------------------------------
    def __getitem__(self, idx: int) -> dict:
        data = self.dataset[idx]
        samples = data.get('data_samples') if isinstance(data, dict) else None
        if samples is None or not hasattr(samples, 'set_metainfo'):
            raise TypeError(
                'EquityDataset: the wrapped pipeline must end with '
                'Pack3DDetInputs (a dict with a Det3DDataSample under '
                f'"data_samples"), got {type(samples).__name__}')
        ident = self.identity_of_packed(samples)
        p = self.likelihood_of(ident)
        samples.set_metainfo(
            dict(
                equity_id=ident,
                equity_likelihood=p,
                equity_weight=float(equity_weight(p, self.eta, self.gamma))))
        return data

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
        # pass other attributes (pipeline, data_root, ...) through
        if name.startswith('__') or name in ('dataset', '_likelihood',
                                             '_index_ids'):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return (f'EquityDataset(likelihood_file={self.likelihood_file!r}, '
                f'eta={self.eta}, gamma={self.gamma}, strict={self.strict}, '
                f'missing={self.missing!r}, '
                f'dataset={_class_name(self.dataset)} of {len(self)} '
                'indices)')
