"""EquityDataset: attach DatasetEquity likelihoods to training samples.

The wrapper

* builds any train dataset config (a plain dataset, ``RepeatDataset``,
  ``CBGSDataset``, ``ClassBalancedDataset``, ``ConcatDataset``; it may itself
  sit inside those wrappers),
* loads a likelihood file (:mod:`mmdet3d_equity.utils.likelihood_file`) and
  validates it against the dataset's own sample identities (fingerprint and
  coverage) and the samples' point-cloud files in ``__init__``, i.e. when the
  runner builds the dataloader, before any worker forks,
* and puts ``equity_likelihood`` (the sample's likelihood p) and
  ``equity_id`` into the metainfo of every packed ``Det3DDataSample``.

It carries p only: the GeneralizedFocalLoss of the EquityHook (loss
weighting) or of the EquityWeightedSampler (resampling) alone turns p into a
weight W(p; eta, gamma). One of them must claim the wrapper before it serves
a training sample (:meth:`EquityDataset.claim`); a wrapper that nothing
applies would train the stock baseline, so it refuses. The sampler claims
when it is built; an EquityHook announces itself when the Runner builds it
(:func:`announce_loss_owner`), and a wrapper built later by the same Runner
is claimed at construction -- before any dataloader worker starts, also for
iteration-based loops, which start their workers when the loop is built.

The likelihood is looked up by the identity of the sample that is actually
returned (``token`` if the packed metainfo has one, else its ``sample_idx``
-- which mmengine's ``get_data_info`` sets to the list position -- mapped
back to the identity stored in the info: the KITTI frame number, as the
scorer records it), never by the wrapper index: BaseDataset refetches a
random index when a pipeline drops a sample. Identities are compared as
strings (``str(sample_idx)``, ``str(token)``): KITTI frame 7 is ``'7'``,
whether the info holds the int 7 or the string '7'.

``metainfo``, ``get_data_info``, ``get_cat_ids`` and ``len`` pass through, so
evaluation, visualisation and ``CBGSDataset`` work unchanged.
"""
import logging
import os
import os.path as osp
import weakref
from typing import Dict, List, Mapping, Optional, Union

import numpy as np
from mmengine.logging import print_log

from mmdet3d.registry import DATASETS
from mmdet3d_equity.utils import (LikelihoodFileError, dataset_fingerprint,
                                    load_likelihood_file,
                                    dataset_sample_identity)
from ..utils.errors import SampleFileError  # noqa: F401

MISSING_POLICIES = ('error', 'max_weight', 'min_weight')
# the likelihood used for an id absent from the file under each policy
# (W(p) decreases with p for every eta, gamma >= 0)
_MISSING_P = {'max_weight': 0.0, 'min_weight': 1.0}
# what may claim the wrapper (see EquityDataset.claim)
CLAIM_KINDS = ('loss', 'sampling', 'inspection')
WEIGHT_OWNER_HELP = (
    "custom_hooks = [dict(type='EquityHook', loss=dict("
    "type='GeneralizedFocalLoss', eta=1.0, gamma=5.0))] (loss weighting), "
    "or train_dataloader.sampler = dict(type='EquityWeightedSampler', "
    "loss=dict(type='GeneralizedFocalLoss', eta=1.0, gamma=5.0, "
    "normalisation='dataset')) (resampling)")


# EquityHooks announced per runner context (see announce_loss_owner)
_ANNOUNCED: Dict[Optional[str], 'weakref.WeakSet'] = {}


def runner_context() -> Optional[str]:
    """Name of the current MessageHub: the one of the Runner being built or
    run (a Runner builds its MessageHub first, then its hooks, and its train
    dataset only when training starts)."""
    from mmengine.logging import MessageHub
    try:
        return MessageHub.get_current_instance().instance_name
    except RuntimeError:  # no MessageHub yet
        return None


def announce_loss_owner(owner) -> None:
    """Called by an EquityHook when it is built: an EquityDataset built
    later in the same runner context is claimed for it (``owner.owner``
    names it)."""
    _ANNOUNCED.setdefault(runner_context(), weakref.WeakSet()).add(owner)


def withdraw_loss_owner(owner) -> None:
    """Undo :func:`announce_loss_owner` (the EquityHook after its run)."""
    for owners in _ANNOUNCED.values():
        owners.discard(owner)


def _as_id(identity) -> str:
    """The normalised form of a sample identity: ``str()``."""
    return str(identity)


def _id_form_hint(dataset_ids, file_ids) -> str:
    """A sentence when ids differ only in form ('000007' vs '7')."""
    def canon(s):
        return str(int(s)) if s.isdigit() else s

    by_canon = {canon(f): f for f in file_ids}
    for d in sorted(dataset_ids):
        f = by_canon.get(canon(d))
        if f is not None and f != d:
            return (f' The ids differ only in form (dataset {d!r}, file '
                    f'{f!r}): ids are compared as strings of the dataset\'s '
                    "own identity (str(sample_idx) or str(token)), so 7 and "
                    "'7' are one sample but '000007' is another; write the "
                    'file with tools/compute_likelihoods.py, which records '
                    'the dataset\'s own ids.')
    return ''


def _points_loader(leaf):
    """(load_dim, transform name) of the leaf's local point-cloud loader, or
    None when its pipeline reads no local point-cloud file."""
    pipeline = getattr(leaf, 'pipeline', None)
    for t in getattr(pipeline, 'transforms', []) or []:
        if type(t).__name__ == 'LoadPointsFromFile':
            if getattr(t, 'backend_args', None):
                return None  # remote storage: not stat-able here
            return int(t.load_dim)
    return None


def check_point_files(paths: Dict[str, str], load_dim: int,
                      where: str) -> None:
    """Refuse missing, empty or truncated point-cloud files (``.bin``-style
    raw float32 records of ``load_dim`` values; ``.npy`` files are only
    checked to exist and be non-empty)."""
    record = 4 * load_dim
    bad = []
    for ident, path in sorted(paths.items()):
        try:
            size = os.stat(path).st_size
        except OSError:
            bad.append(f'{path} (sample {ident}) does not exist')
            continue
        if size == 0:
            bad.append(f'{path} (sample {ident}) is empty (0 bytes)')
        elif not path.endswith('.npy') and size % record:
            bad.append(
                f'{path} (sample {ident}) has {size} bytes, not a multiple '
                f'of the {record}-byte point record (load_dim={load_dim} '
                'float32 values): truncated, or written with another '
                'load_dim')
    if bad:
        shown = '; '.join(bad[:5]) + ('; ...' if len(bad) > 5 else '')
        raise SampleFileError(
            f'EquityDataset: {len(bad)} of {len(paths)} point-cloud files of '
            f'the train samples {where} cannot be trained on: {shown}. '
            'Restore or re-create these files (or drop the samples from the '
            'info file and recompute the likelihoods) before training.')


def _build(dataset):
    if isinstance(dataset, Mapping):
        return DATASETS.build(dataset)
    return dataset


def _class_name(obj) -> str:
    return type(obj).__name__


def index_identity_table(dataset, sample_idx_map: Optional[Dict] = None,
                         leaf_ids: Optional[set] = None,
                         point_files: Optional[Dict] = None) -> np.ndarray:
    """Identity (str) of the sample at every index of ``dataset``.

    Walks the standard wrappers without loading data; a leaf dataset is
    asked for ``get_data_info(i)``. ``sample_idx_map`` (if given) collects
    ``str(info['sample_idx']) -> identity`` of the leaf infos and raises when
    one sample_idx would name two different samples; ``leaf_ids`` collects
    the identities of all leaf samples (the split, whatever a CBGSDataset
    happened to draw); ``point_files`` collects ``{load_dim: {identity:
    point-cloud path}}`` of leaves whose pipeline loads local point clouds.
    """
    name = _class_name(dataset)

    def inner(ds):
        return index_identity_table(ds, sample_idx_map, leaf_ids,
                                    point_files)

    if name == 'EquityDataset':
        return inner(dataset.dataset)
    if name == 'RepeatDataset':
        return np.tile(inner(dataset.dataset), int(dataset.times))
    if name == 'CBGSDataset':
        return inner(dataset.dataset)[np.asarray(dataset.sample_indices,
                                                 dtype=np.int64)]
    if name == 'ClassBalancedDataset':
        return inner(dataset.dataset)[np.asarray(dataset.repeat_indices,
                                                 dtype=np.int64)]
    if name == 'ConcatDataset':
        return np.concatenate([inner(d) for d in dataset.datasets])
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    load_dim = _points_loader(dataset) if point_files is not None else None
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
        path = (info.get('lidar_points') or {}).get('lidar_path')
        if load_dim is not None and path:
            point_files.setdefault(load_dim, {})[ident] = path
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
    """Wrap a train dataset and attach DatasetEquity likelihoods.

    Args:
        dataset (dict | dataset): the train dataset (config) to wrap.
        likelihood_file (str): file written by
            ``tools/compute_likelihoods.py`` for this training split.
        strict (bool): require the file's dataset fingerprint to equal the
            fingerprint of this dataset's sample identities (same split, same
            filtering). ``False`` accepts another fingerprint (logged) as long
            as every sample is covered (see ``missing``). Defaults to True.
        missing (str): samples of the dataset without a likelihood in the
            file: ``'error'`` (default), ``'max_weight'`` (treated as the
            rarest appearance, p = 0, the largest weight) or ``'min_weight'``
            (treated as the most common, p = 1). Any policy but 'error'
            requires ``strict=False`` and is logged with the number of
            samples.
        allow_pickle (bool): also read a likelihood file of an earlier
            version stored as a pickle (``.pkl``). A pickle can run code when
            it is loaded: only for files you trust; better convert them once
            with ``tools/convert_likelihoods.py``. Defaults to False.

    eta, gamma and the normalisation are not arguments of the wrapper: they
    are set once, in the GeneralizedFocalLoss of the EquityHook or of the
    EquityWeightedSampler.
    """

    def __init__(self,
                 dataset: Union[dict, object],
                 likelihood_file: str,
                 strict: bool = True,
                 missing: str = 'error',
                 allow_pickle: bool = False,
                 **unknown) -> None:
        self._claims: Dict[str, str] = {}
        moved = sorted(k for k in unknown
                       if k in ('eta', 'gamma', 'equity_weight',
                                'normalisation'))
        if moved:
            raise TypeError(
                f'EquityDataset does not take {moved}: the dataset carries '
                'the likelihood p only, and eta, gamma and the normalisation '
                'are set once, in the GeneralizedFocalLoss that applies them: '
                f'{WEIGHT_OWNER_HELP}. Remove {moved} from '
                'train_dataloader.dataset.')
        if unknown:
            raise TypeError(f'EquityDataset got unexpected arguments '
                            f'{sorted(unknown)}; it takes dataset, '
                            'likelihood_file, strict, missing and '
                            'allow_pickle')
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
        self.strict = bool(strict)
        self.missing = missing
        self.likelihood_file = likelihood_file

        self.dataset = _build(dataset)
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()
        if not isinstance(allow_pickle, bool):
            raise TypeError('EquityDataset: allow_pickle must be True or '
                            f'False, got {allow_pickle!r}')
        record = load_likelihood_file(likelihood_file,
                                      allow_pickle=allow_pickle)
        self.record_meta = {
            k: record.get(k)
            for k in ('id_key', 'fingerprint', 'dataset', 'embedder',
                      'reducer', 'clusterer', 'likelihood_def', 'aggregation',
                      'created')
        }
        self._sample_idx_to_id: Dict[str, str] = {}
        self._leaf_ids: set = set()
        point_files: Dict[str, Dict[str, str]] = {}
        self._index_ids = index_identity_table(self.dataset,
                                               self._sample_idx_to_id,
                                               self._leaf_ids, point_files)
        self._likelihood = self._validate(record)
        for load_dim, paths in point_files.items():
            check_point_files(paths, int(load_dim),
                              f'(likelihood file {likelihood_file})')
        self._fully_initialized = True
        for hook in list(_ANNOUNCED.get(runner_context(), ())):
            self.claim('loss', hook.owner)

    # ------------------------------------------------------------------
    def _validate(self, record) -> Dict[str, float]:
        path = self.likelihood_file
        ids = self._leaf_ids
        file_map = {
            _as_id(i): float(p)
            for i, p in zip(record['sample_ids'],
                            np.asarray(record['likelihood'],
                                       dtype=np.float64))
        }
        fp = dataset_fingerprint(ids)
        file_ids = set(file_map)
        missing = sorted(ids - file_ids)
        extra = len(file_ids - ids)
        hint = _id_form_hint(missing, file_ids - ids) if missing else ''
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
                   f'`missing`).{hint}')
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
                    f"missing='max_weight' | 'min_weight').{hint}")
            p = _MISSING_P[self.missing]
            print_log(
                f'EquityDataset: {len(missing)} of {len(ids)} train samples '
                f'have no likelihood in {path}; policy '
                f'missing={self.missing!r} gives them p={p}.', 'current',
                logging.WARNING)
            for m in missing:
                table[m] = p
        p = self._index_likelihoods_from(table)
        print_log(
            f'EquityDataset: {len(ids)} samples ({len(self)} indices) from '
            f'{path} (likelihood_def={record["likelihood_def"]!r}, '
            f'clusterer={(record["clusterer"] or {}).get("type")}): p mean '
            f'{p.mean():.4f}, min {p.min():.4f}, max {p.max():.4f}',
            'current')
        return table

    def _check_ann_file(self, record) -> None:
        # Token-less datasets (KITTI) identify samples by frame number; a
        # file computed from another info file can hold the same frame
        # numbers for other data (e.g. a renumbered split), so the info
        # file names are compared as well.
        if record.get('id_key') != 'sample_idx' or not self.strict:
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
                f'{ann}; token-less datasets (KITTI) identify samples by '
                'frame number only, which another info file may use for '
                'other data. Recompute the likelihoods for this train config '
                'or set EquityDataset(strict=False).')

    def _index_likelihoods_from(self, table) -> np.ndarray:
        return np.fromiter((table[i] for i in self._index_ids.tolist()),
                           dtype=np.float64, count=len(self._index_ids))

    # -- who applies the likelihoods ------------------------------------
    def claim(self, kind: str, owner: str) -> None:
        """Record what applies the attached likelihoods.

        ``kind``: ``'loss'`` (EquityHook: per-sample loss weighting),
        ``'sampling'`` (EquityWeightedSampler: resampling) or
        ``'inspection'`` (reading samples outside training, e.g. in a
        notebook). ``owner``: a name for messages. The EquityHook claims in
        ``before_train``, the sampler when it is built. Loss weighting and
        resampling together would apply W twice, and two loss owners
        (two EquityHooks) as well: both are refused.
        """
        if kind not in CLAIM_KINDS:
            raise ValueError(f'EquityDataset.claim: kind must be one of '
                             f'{CLAIM_KINDS}, got {kind!r}')
        if {kind, *self._claims} >= {'loss', 'sampling'}:
            loss = owner if kind == 'loss' else self._claims['loss']
            raise ValueError(
                f'EquityDataset: {loss} (loss weighting) and the '
                'EquityWeightedSampler (resampling) would both apply W, '
                'i.e. twice. Use one: remove the EquityHook (resampling '
                'mode) or the EquityWeightedSampler (loss weighting mode).')
        prev = self._claims.get(kind)
        if kind == 'loss' and prev is not None and prev != owner:
            raise ValueError(
                f'EquityDataset: two loss owners ({prev} and {owner}) would '
                'each weight the loss by W; configure one EquityHook.')
        self._claims[kind] = str(owner)

    def release(self, kind: str, owner: str) -> None:
        """Undo :meth:`claim` (the EquityHook releases after training)."""
        if self._claims.get(kind) == str(owner):
            del self._claims[kind]

    @property
    def claimed_by(self) -> Dict[str, str]:
        return dict(self._claims)

    # -- lookups --------------------------------------------------------
    def likelihood_of(self, identity) -> float:
        """p of a sample identity (an int sample_idx is normalised with
        ``str()``, as everywhere in the plugin)."""
        key = _as_id(identity)
        try:
            return float(self._likelihood[key])
        except KeyError:
            raise KeyError(
                f'EquityDataset: sample {key!r} is not a sample of the '
                f'wrapped dataset (likelihood file {self.likelihood_file})'
            ) from None

    def identities_of(self, dataset=None) -> np.ndarray:
        """Identities per index of ``dataset`` (default: this wrapper)."""
        if dataset is None or dataset is self:
            return self._index_ids
        return index_identity_table(dataset)

    def index_likelihoods(self, dataset=None) -> np.ndarray:
        """p per index of ``dataset`` (default this wrapper), which may be an
        outer wrapper (RepeatDataset, CBGSDataset) around this one."""
        ids = self.identities_of(dataset)
        return np.array([self.likelihood_of(i) for i in ids.tolist()],
                        dtype=np.float64)

    def identity_of_packed(self, data_sample) -> str:
        meta = data_sample.metainfo
        if meta.get('token') is not None:
            return _as_id(meta['token'])
        if meta.get('sample_idx') is not None:
            key = _as_id(meta['sample_idx'])
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
        if not self._claims:
            raise RuntimeError(
                'EquityDataset: nothing applies the likelihoods this wrapper '
                'attaches, so training would silently be the stock baseline. '
                f'Add what applies them: {WEIGHT_OWNER_HELP}. (To read '
                "samples outside training, call dataset.claim('inspection', "
                "'<your name>') first.)")
        data = self.dataset[idx]
        samples = data.get('data_samples') if isinstance(data, dict) else None
        if samples is None or not hasattr(samples, 'set_metainfo'):
            raise TypeError(
                'EquityDataset: the wrapped pipeline must end with '
                'Pack3DDetInputs (a dict with a Det3DDataSample under '
                f'"data_samples"), got {type(samples).__name__}')
        ident = self.identity_of_packed(samples)
        samples.set_metainfo(
            dict(equity_id=ident, equity_likelihood=self.likelihood_of(ident)))
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
                                             '_index_ids', '_claims'):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return (f'EquityDataset(likelihood_file={self.likelihood_file!r}, '
                f'strict={self.strict}, missing={self.missing!r}, '
                f'dataset={_class_name(self.dataset)} of {len(self)} '
                'indices)')
