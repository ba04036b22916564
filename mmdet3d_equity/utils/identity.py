"""The identity of a dataset sample, shared by scoring and training.

Likelihoods are keyed by the dataset's *own* sample identity, never by an
index: KITTI infos carry ``sample_idx`` (the frame number), nuScenes infos a
``token`` (their ``sample_idx`` is only a position in the info file).
"""
import hashlib
from typing import Iterable, Mapping, Union

SampleId = Union[int, str]


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
    import copy
    import pickle
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
