"""Oracle appearance likelihoods from the planted modes of a tiny dataset.

The generators record every frame's appearance mode in
``<root>/frame_modes.json``. The oracle likelihood of a training frame is the
DatasetEquity 'largest' definition applied to the *true* modes instead of
clusters of embeddings:

    p_i = |train frames of mode(i)| / |train frames of the most common mode|

so the most common mode gets p = 1 and the rare mode its frequency ratio. It
is an upper bound for what a scorer can find (a perfect clustering that
recovers the planted modes), used by the efficacy study to separate the
scorer from the weighting. The file is an ordinary likelihood file (same
format, provenance ``embedder.type = 'oracle'``), keyed like the scorer's
(KITTI: the frame number as a string).
"""
import json
import os.path as osp
from collections import Counter
from typing import Dict

import numpy as np

ORACLE_EMBEDDER = 'oracle'


def read_frame_modes(root: str) -> dict:
    path = osp.join(root, 'frame_modes.json')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} not found: oracle likelihoods need the planted modes '
            'that tools/create_tiny_dataset.py writes next to the data')
    with open(path) as f:
        return json.load(f)


def oracle_likelihoods(root: str,
                       split: str = 'train') -> Dict[str, float]:
    """{sample id: oracle likelihood} of the frames of ``split``."""
    planted = read_frame_modes(root)
    modes = {sid: m for sid, m in planted['modes'].items()
             if planted['split'][sid] == split}
    if not modes:
        raise ValueError(f'{root}/frame_modes.json has no frames of split '
                         f'{split!r}')
    counts = Counter(modes.values())
    top = max(counts.values())
    return {sid: counts[m] / top for sid, m in modes.items()}


def write_oracle_likelihood_file(root: str, out: str,
                                 ann_file: str = 'kitti_infos_train.pkl',
                                 overwrite: bool = False) -> dict:
    """Write the oracle likelihood file of the train split of ``root``
    (``ann_file``: the info file the train dataset reads). Returns the
    record."""
    from ...utils.likelihood_file import build_record, save_likelihood_file
    root = osp.abspath(root)
    # the info file as the train dataset reads it (data_root + ann_file):
    # the binding check compares absolute paths
    ann_file = osp.join(root, ann_file)
    planted = read_frame_modes(root)
    lik = oracle_likelihoods(root, 'train')
    ids = sorted(lik, key=lambda s: (len(s), s))
    train_modes = [planted['modes'][s] for s in ids]
    names = sorted(set(train_modes))
    cluster_id = np.array([names.index(m) for m in train_modes], np.int64)
    sizes = Counter(train_modes)
    record = build_record(
        ids, [lik[s] for s in ids], cluster_id,
        [sizes[m] for m in train_modes], id_key='sample_idx',
        dataset=dict(type=planted.get('dataset', 'kitti'),
                     data_root=root, ann_file=ann_file,
                     split='train', num_samples=len(ids)),
        embedder=dict(type=ORACLE_EMBEDDER, source='frame_modes.json'),
        reducer=None,
        clusterer=dict(type='planted_modes', modes=names),
        likelihood_def='largest',
        extra=dict(mode_counts=dict(sizes)))
    save_likelihood_file(record, out, overwrite=overwrite)
    return record
