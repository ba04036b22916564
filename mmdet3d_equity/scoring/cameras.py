"""Several cameras per sample: how their embeddings or likelihoods are
combined (written once, used when fitting, when scoring other splits and
when checking a rebuilt embedder).

``aggregation`` records (saved in the likelihood and scorer files):

* ``None`` (no cameras: LiDAR embedders) or ``mode='single'``: one view;
* ``mode='concat'`` / ``'mean'`` (``level='embedding'``): the cameras'
  embeddings concatenated / averaged, then scored as one;
* ``mode='likelihood-min'`` / ``'likelihood-mean'`` (``level=
  'likelihood'``): every camera scored on its own, the likelihood of a
  sample the min / mean over its cameras.

Clusters with likelihood-level aggregation. A sample's cluster is the
cluster of its rarest camera (lowest likelihood): the pair (camera, that
camera's cluster), with id ``camera_index * stride + id``. Its members are
all the training samples in that camera's cluster and its size is their
number; the CSV, summary.json and the figures use this one definition
(:func:`cluster_table`).
"""
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..utils.errors import ScoringError

CAMERA_AGGREGATIONS = ('concat', 'mean', 'likelihood-min', 'likelihood-mean')
#: how a sample's cluster is chosen with likelihood-level aggregation
CLUSTER_RULE = ('cluster of the camera with the lowest likelihood, ids made '
                'unique as camera_index * stride + id')


def aggregation_record(cameras: Optional[Sequence[str]], num_views: int,
                       mode: Optional[str]) -> Optional[Dict]:
    """The aggregation record of a run with ``num_views`` embeddings per
    sample (``mode`` None: one view)."""
    if num_views == 1:
        return None if cameras is None else dict(cameras=list(cameras),
                                                 mode='single')
    if mode not in CAMERA_AGGREGATIONS:
        raise ScoringError(f'{num_views} cameras per sample need '
                           f'--camera-aggregation in {CAMERA_AGGREGATIONS}, '
                           f'got {mode!r}')
    if mode in ('concat', 'mean'):
        return dict(cameras=list(cameras), mode=mode, level='embedding')
    return dict(cameras=list(cameras), mode=mode, level='likelihood',
                op=mode.split('-')[1], cluster_id_rule=CLUSTER_RULE)


def embedding_views(emb: np.ndarray, aggregation: Optional[Mapping]
                    ) -> List[Tuple[str, np.ndarray]]:
    """``[(name, (N, D) embeddings)]`` to score for (N, C, D) ``emb``:
    ``[('embedding', x)]`` for one view or embedding-level aggregation,
    one ``(camera, x)`` per camera for likelihood-level aggregation."""
    n, c, d = emb.shape
    mode = (aggregation or {}).get('mode', 'single')
    if mode == 'single':
        if c != 1:
            raise ScoringError(f'{c} cameras per sample, the scorer was '
                               'fitted on one')
        return [('embedding', emb[:, 0])]
    cams = list(aggregation['cameras'])
    if c != len(cams):
        raise ScoringError(f'embeddings of {c} cameras; the aggregation '
                           f'{mode!r} is over {cams}')
    if mode == 'concat':
        return [('embedding', emb.reshape(n, c * d))]
    if mode == 'mean':
        return [('embedding', emb.mean(axis=1))]
    if mode in ('likelihood-min', 'likelihood-mean'):
        return [(cam, emb[:, i]) for i, cam in enumerate(cams)]
    raise ScoringError(f'unknown camera aggregation {mode!r}; one of '
                       f'{CAMERA_AGGREGATIONS}')


def combine_camera_scores(per_camera: Mapping[str, Dict], op: str) -> Dict:
    """Combine per-camera scores of the same samples into one per sample.

    ``op='min'``: p = min over cameras; ``op='mean'``: p = mean over cameras.
    ``cluster_id``/``cluster_size`` are those of the camera with the lowest
    likelihood (the sample's rarest view); cluster ids are made unique across
    cameras as ``camera_index * (max id + 1) + id``.
    """
    if op not in ('min', 'mean'):
        raise ScoringError(f"camera likelihood aggregation must be 'min' or "
                           f"'mean', got {op!r}")
    cams = list(per_camera)
    if not cams:
        raise ScoringError('no cameras to combine')
    lik = np.stack([per_camera[c]['likelihood'] for c in cams], axis=1)
    cid = np.stack([per_camera[c]['cluster_id'] for c in cams], axis=1)
    size = np.stack([per_camera[c]['cluster_size'] for c in cams], axis=1)
    rarest = np.argmin(lik, axis=1)
    rows = np.arange(lik.shape[0])
    stride = int(cid.max()) + 1
    out_cid = rarest.astype(np.int64) * stride + cid[rows, rarest]
    return dict(likelihood=(lik.min(axis=1) if op == 'min'
                            else lik.mean(axis=1)).astype(np.float64),
                cluster_id=out_cid.astype(np.int64),
                cluster_size=size[rows, rarest].astype(np.int64),
                rarest_camera=[cams[i] for i in rarest])


def score_views(emb: np.ndarray, aggregation: Optional[Mapping],
                score: Callable[[str, np.ndarray], Dict]) -> Dict:
    """Score (N, C, D) embeddings view by view with ``score(name, x)`` and
    combine the cameras as ``aggregation`` says. The result has the
    fields of one view's result (likelihood, cluster_id, cluster_size, ...)
    and, with likelihood-level aggregation, ``per_camera`` (each camera's
    result) and ``rarest_camera``."""
    views = embedding_views(emb, aggregation)
    results = OrderedDict((name, score(name, x)) for name, x in views)
    if (aggregation or {}).get('level') != 'likelihood':
        return dict(results['embedding'])
    comb = combine_camera_scores(results, aggregation['op'])
    first = results[views[0][0]]
    return dict(first, likelihood=comb['likelihood'],
                cluster_id=comb['cluster_id'],
                cluster_size=comb['cluster_size'],
                rarest_camera=comb['rarest_camera'], per_camera=results)


def cluster_table(likelihood, cluster_id, cluster_size,
                  per_camera: Optional[Mapping] = None,
                  rarest_camera: Optional[Sequence[str]] = None
                  ) -> 'OrderedDict[int, Dict]':
    """``{cluster id: dict(size, members, camera, mean_likelihood)}`` of
    the clusters the samples are in (module docstring): ``members`` are
    the indices of the training samples in the cluster, ``size`` their
    number (equal to the samples' ``cluster_size``), ``camera`` the camera
    whose clustering it is (None for one view), ``mean_likelihood`` the
    mean likelihood of its members."""
    lik = np.asarray(likelihood, np.float64)
    cid = np.asarray(cluster_id, np.int64)
    size = np.asarray(cluster_size, np.int64)
    out = OrderedDict()
    for c in np.unique(cid):
        first = int(np.flatnonzero(cid == c)[0])
        if per_camera is None or rarest_camera is None:
            members, cam = np.flatnonzero(cid == c), None
        else:
            cam = rarest_camera[first]
            own = np.asarray(per_camera[cam]['cluster_id'], np.int64)
            members = np.flatnonzero(own == own[first])
        if len(members) != size[first]:
            raise ScoringError(
                f'cluster {int(c)} has {len(members)} members but its '
                f'recorded size is {int(size[first])}: the record is '
                'inconsistent; re-run the scoring')
        out[int(c)] = dict(size=int(size[first]),
                           members=[int(i) for i in members], camera=cam,
                           mean_likelihood=float(lik[members].mean()))
    return out
