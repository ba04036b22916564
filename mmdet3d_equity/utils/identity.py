"""The identity of dataset samples, and of every index of a wrapped dataset.

Likelihoods are keyed by the dataset's *own* sample identity, never by an
index: KITTI infos carry ``sample_idx`` (the frame number), nuScenes infos a
``token`` (their ``sample_idx`` is only a position in the info file).

Dataset wrappers are known here and only here, through one protocol: a
wrapper's :func:`wrapped_indices` is a list of ``(inner dataset, indices)``
whose concatenated indices are the wrapper's own, in order (index ``k`` of
the wrapper is ``indices[k]`` of its inner dataset); a leaf has None. A
dataset class takes part by defining a ``wrapped_indices()`` method;
mmengine's ``RepeatDataset``, ``ClassBalancedDataset`` and
``ConcatDataset`` and mmdet3d's ``CBGSDataset`` are described in
:data:`STOCK_WRAPPERS`.

KITTI-format data numbers its frames from 000000, so two datasets share
their ids; :func:`samples_fingerprint` binds a sample set to its content
(the size of every sample's point-cloud file) as well.
"""
import copy
import hashlib
import json
import os
import pickle
from typing import Callable, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import ConfigError

SampleId = Union[int, str]

#: {class name: its wrapped_indices} for wrappers that do not define it
STOCK_WRAPPERS = {
    'RepeatDataset': lambda d: [(d.dataset, np.tile(
        np.arange(len(d.dataset)), int(d.times)))],
    'ClassBalancedDataset': lambda d: [(d.dataset, d.repeat_indices)],
    'CBGSDataset': lambda d: [(d.dataset, d.sample_indices)],
    'ConcatDataset': lambda d: [(c, np.arange(len(c))) for c in d.datasets],
}


def sample_identity(info: Mapping) -> str:
    """Return a sample's identity as a string.

    ``token`` wins when present (nuScenes, Lyft), else ``sample_idx``
    (KITTI, Waymo). Identities are strings so that files are portable
    (KITTI ``sample_idx`` 7 is ``'7'``).
    """
    if info.get('token', None) is not None:
        return str(info['token'])
    if info.get('sample_idx', None) is not None:
        return str(info['sample_idx'])
    raise KeyError(
        'cannot identify a dataset sample: its info has neither a "token" '
        '(nuScenes) nor a "sample_idx" (KITTI) field. Keys present: '
        f'{sorted(info.keys())}')


def id_key_of(info: Mapping) -> str:
    """The info field that :func:`sample_identity` reads."""
    return 'token' if info.get('token', None) is not None else 'sample_idx'


def dataset_fingerprint(sample_ids: Iterable[SampleId]) -> str:
    """sha256 of the sorted, newline-joined sample identities.

    Order-independent, so the same split gives the same fingerprint however
    it is iterated or sharded.
    """
    ids = sorted(str(s) for s in sample_ids)
    h = hashlib.sha256()
    h.update('\n'.join(ids).encode('utf-8'))
    return h.hexdigest()


def raw_data_info(dataset, idx: int) -> dict:
    """The info of sample ``idx`` as the dataset parsed it.

    ``mmengine.dataset.BaseDataset.get_data_info`` OVERWRITES
    ``info['sample_idx']`` with the list position ``idx``, so for KITTI
    ``sample_identity(dataset.get_data_info(i))`` is the position, not the
    frame number. This reads the stored info instead (serialized or not).
    """
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    if getattr(dataset, 'serialize_data', False):
        start = 0 if idx == 0 else dataset.data_address[idx - 1].item()
        end = dataset.data_address[idx].item()
        return pickle.loads(memoryview(dataset.data_bytes[start:end]))
    return copy.deepcopy(dataset.data_list[idx])


def dataset_sample_identity(dataset, idx: int) -> str:
    """:func:`sample_identity` of sample ``idx`` of a (leaf) dataset, from its
    stored info (see :func:`raw_data_info`)."""
    return sample_identity(raw_data_info(dataset, idx))


# ------------------------------------------------------------- wrappers
def wrapped_indices(dataset) -> Optional[List[Tuple[object, np.ndarray]]]:
    """The protocol (module docstring): ``[(inner, indices)]`` of a wrapper,
    None for a leaf dataset."""
    own = getattr(dataset, 'wrapped_indices', None)
    stock = STOCK_WRAPPERS.get(type(dataset).__name__)
    if own is None and stock is None:
        if hasattr(dataset, 'dataset') or hasattr(dataset, 'datasets'):
            raise ConfigError(
                f'{type(dataset).__name__} wraps other datasets, but how its '
                'indices map to theirs is unknown: give the class a method '
                'wrapped_indices() returning [(inner_dataset, indices)] '
                '(see mmdet3d_equity.utils.identity)')
        return None
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    parts = own() if own is not None else stock(dataset)
    return [(d, np.asarray(i, dtype=np.int64)) for d, i in parts]


def find_datasets(dataset, cls) -> list:
    """The datasets of type ``cls`` in ``dataset`` (itself or nested)."""
    if isinstance(dataset, cls):
        return [dataset]
    return [f for inner, _ in wrapped_indices(dataset) or ()
            for f in find_datasets(inner, cls)]


def leaf_datasets(dataset) -> list:
    """The leaf datasets inside ``dataset``, each once, in order."""
    inner = wrapped_indices(dataset)
    if inner is None:
        return [dataset]
    out = []
    for d, _ in inner:
        out += [leaf for leaf in leaf_datasets(d)
                if not any(leaf is o for o in out)]
    return out


def leaf_samples(leaf) -> List[Tuple[str, str, Optional[str]]]:
    """``(packed sample_idx, identity, point-cloud path)`` of every index
    of a leaf: the packed ``sample_idx`` is what ``get_data_info`` writes
    (mmengine: the list position), the identity the stored info's."""
    if hasattr(leaf, 'full_init'):
        leaf.full_init()
    out = []
    for i in range(len(leaf)):
        info = raw_data_info(leaf, i)
        packed = str(leaf.get_data_info(i).get('sample_idx', i))
        out.append((packed, sample_identity(info), lidar_path(info)))
    return out


def leaf_identities(leaf) -> np.ndarray:
    """:func:`dataset_sample_identity` of every index of a leaf dataset."""
    if hasattr(leaf, 'full_init'):
        leaf.full_init()
    out = np.empty(len(leaf), dtype=object)
    out[:] = [dataset_sample_identity(leaf, i) for i in range(len(leaf))]
    return out


def index_identities(dataset, leaf_ids: Optional[Callable] = None
                     ) -> np.ndarray:
    """The identity (str) of the sample at every index of ``dataset``,
    through the wrappers without loading data; ``leaf_ids(leaf)`` gives a
    leaf's (default :func:`leaf_identities`)."""
    leaf_ids = leaf_ids or leaf_identities
    inner = wrapped_indices(dataset)
    if inner is None:
        return leaf_ids(dataset)
    parts = [index_identities(d, leaf_ids)[idx] for d, idx in inner]
    return np.concatenate(parts) if parts else np.empty(0, dtype=object)


def inner_dataset_cfg(ds_cfg: Mapping) -> Tuple[Mapping, List[str]]:
    """The innermost dataset config of a (wrapped) dataset config and the
    types of the wrappers around it, outermost first. Config wrappers are
    recognised as the built ones are: a wrapper holds its inner dataset
    under ``dataset`` (a ConcatDataset's ``datasets`` stays, for the caller
    to refuse or walk)."""
    ds, chain = copy.deepcopy(ds_cfg), []
    while isinstance(ds.get('dataset'), Mapping) and 'type' in ds['dataset']:
        t = ds.get('type', '')
        chain.append(t if isinstance(t, str) else getattr(t, '__name__',
                                                          str(t)))
        ds = copy.deepcopy(ds['dataset'])
    return ds, chain


# ------------------------------------------------------------- content
def lidar_path(info: Mapping) -> Optional[str]:
    """The point-cloud file an info names (None: none)."""
    return (info.get('lidar_points') or {}).get('lidar_path')


def samples_fingerprint(dataset) -> str:
    """sha256 binding the samples of ``dataset`` to their content.

    The hashed text is the canonical JSON (sorted keys, no spaces) of
    ``{identity: [[file name, size in bytes or None], ...]}`` over the
    samples of every leaf, with each sample's point-cloud file (base name;
    size None when it is not a local file). Two KITTI-format datasets with
    the same frame numbers differ here unless their point clouds have the
    same sizes; moving the data to another root keeps it.
    """
    content = {}
    for leaf in leaf_datasets(dataset):
        for i in range(len(leaf)):
            info = raw_data_info(leaf, i)
            path = lidar_path(info)
            files = content.setdefault(sample_identity(info), [])
            if path:
                size = os.stat(path).st_size if os.path.isfile(path) \
                    else None
                if [os.path.basename(path), size] not in files:
                    files.append([os.path.basename(path), size])
    blob = json.dumps({k: sorted(v, key=str) for k, v in content.items()},
                      sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(blob.encode('utf-8')).hexdigest()
