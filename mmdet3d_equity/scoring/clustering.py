"""Reduction, clustering and appearance likelihoods (DatasetEquity steps 2-3).

Everything here works on an ``(N, D)`` embedding matrix and uses
scikit-learn estimators; every estimator parameter can be set and the
parameters actually used are returned for the likelihood file's provenance.

Likelihood definitions (``likelihood_def``)

``'largest'``  p_i = |C(i)| / max_c |C|  (the DatasetEquity paper's): the most
               common appearance gets p = 1.
``'fraction'`` p_i = |C(i)| / N.
``'density'``  kNN density in the reduced space, normalised by its maximum and
               put on a linear scale:  with r_i the distance from sample i to
               its k-th nearest other sample and D the reduced dimension, the
               kNN density estimate is rho_i = k / (N V_D r_i^D); we use
               p_i = (rho_i / max_j rho_j)^(1/D) = min_j r_j / r_i, which is
               in (0, 1], 1 for the densest sample, and independent of the
               clustering (the D-th root keeps it from collapsing to ~0 for
               everything but the densest point in high dimension).
               Duplicates (r = 0) get p = 1.

Clustering noise (label -1 from DBSCAN/HDBSCAN) is NEVER pooled into one
cluster: every noise point becomes its own singleton cluster (size 1, a
unique cluster id), so an isolated sample gets the smallest likelihood.
"""
import copy
import math
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from ..utils.errors import ScoringError  # noqa: F401
from .registry import CLUSTERERS

LIKELIHOOD_DEFS = ('largest', 'fraction', 'density')
REDUCER_TYPES = ('none', 'pca')


def clusterer_types():
    """The names of the registered clusterers."""
    CLUSTERERS.import_from_location()
    return tuple(sorted(CLUSTERERS.module_dict))


def get_clusterer(kind: str):
    """The registered clusterer ``kind`` (an instance), or ScoringError."""
    cls = CLUSTERERS.get(kind)
    if cls is None:
        raise ScoringError(f'unknown clusterer type {kind!r}; choose one of '
                           f'{list(clusterer_types())}')
    return cls()


def clusterer_preset(kind: str) -> dict:
    """``dict(type=kind, **preset)``: the starting parameters of
    ``--clusterer kind``."""
    return dict(type=kind, **get_clusterer(kind).preset)



#: The default pipeline (see docs/likelihoods.md for the measurements behind
#: it): randomized PCA to 64 dims in float32 (one power iteration: the top
#: components are what clustering needs, and it is 3-4x faster than the
#: default 7), then KMeans (k-means++, one init) with a modest number of
#: clusters that grows with the dataset ('auto', see :func:`auto_n_clusters`).
DEFAULT_REDUCER = dict(type='pca', n_components=64, whiten=False,
                       svd_solver='randomized', iterated_power=1)
DEFAULT_CLUSTERER = dict(type='kmeans', n_clusters='auto', n_init=1,
                         max_iter=100)
DEFAULT_LIKELIHOOD = 'largest'


def _estimator_class(kind: str):
    if kind == 'pca':
        from sklearn.decomposition import PCA
        return PCA
    return get_clusterer(kind).estimator_class()


def auto_n_clusters(n: int) -> int:
    """Number of KMeans/GMM clusters for ``n_clusters='auto'``.

    round(sqrt(n) / 2), at least 2 and at most n: 4 clusters for 64 samples,
    84 for nuScenes' 28k training samples. Coarse enough that common
    appearances stay in big clusters, fine enough that small, distinct groups
    get their own cluster.
    """
    return int(min(n, max(2, round(math.sqrt(n) / 2.0))))


def check_embeddings(x, ids=None) -> np.ndarray:
    """Return ``x`` as a finite float32 (N, D) array or raise ScoringError."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ScoringError(f'embeddings must be a 2-D (N, D) array, got shape '
                           f'{x.shape}')
    if x.shape[0] == 0:
        raise ScoringError('no embeddings to cluster: the training split is '
                           'empty (check ann_file / data_root of '
                           'train_dataloader.dataset)')
    if not np.issubdtype(x.dtype, np.number):
        raise ScoringError(f'embeddings must be numeric, got {x.dtype}')
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        which = ([ids[i] for i in rows[:5]] if ids is not None
                 else rows[:5].tolist())
        raise ScoringError(
            f'{len(rows)} embedding(s) contain NaN/inf (samples {which}'
            f'{"..." if len(rows) > 5 else ""}). The embedder produced '
            'non-finite features: check the checkpoint (diverged training?) '
            'and the input images / point clouds of these samples.')
    return np.ascontiguousarray(x, dtype=np.float32)


def _split_cfg(cfg: Optional[Mapping], kinds, what: str) -> Tuple[str, dict]:
    if cfg is None:
        return 'none', {}
    if isinstance(cfg, str):
        cfg = dict(type=cfg)
    if not isinstance(cfg, Mapping) or 'type' not in cfg:
        raise ScoringError(f'{what} must be a dict with a "type" key, got '
                           f'{cfg!r}')
    params = dict(cfg)
    kind = str(params.pop('type')).lower()
    if kinds is None:  # a clusterer: any registered one
        get_clusterer(kind)
    elif kind not in kinds:
        raise ScoringError(f'unknown {what} type {kind!r}; choose one of '
                           f'{list(kinds)}')
    return kind, params


def _make_estimator(kind: str, params: dict, what: str, seed: Optional[int]):
    cls = _estimator_class(kind)
    valid = cls().get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ScoringError(
            f'unknown parameter(s) {unknown} for {what} {kind!r} '
            f'({cls.__module__}.{cls.__name__}); valid parameters: '
            f'{sorted(valid)}')
    params = dict(params)
    if 'random_state' in valid and params.get('random_state') is None:
        params['random_state'] = seed
    try:
        est = cls(**params)
    except TypeError as e:  # pragma: no cover - get_params covers this
        raise ScoringError(f'bad parameters for {what} {kind!r}: {e}') from e
    _check_by_fitting(est, kind, params, what)
    return est


#: integer parameters that need at least that many samples
_SIZE_PARAMS = ('n_clusters', 'n_components', 'min_cluster_size',
                'min_samples')


def _check_by_fitting(est, kind: str, params: Mapping, what: str) -> None:
    """Check the parameters the way scikit-learn does, with its public API:
    fit a copy on a small random array that any valid parameters can fit
    (enough samples for n_clusters / n_components / min_cluster_size,
    enough features for PCA's n_components; one iteration unless max_iter
    is given). scikit-learn validates parameters when fitting, so an error
    here is a parameter error; raises ScoringError naming it."""
    import warnings

    from sklearn.base import clone
    sizes = [int(v) for k, v in params.items() if k in _SIZE_PARAMS
             and isinstance(v, (int, np.integer))
             and not isinstance(v, bool) and v > 0]
    k = max(sizes, default=2)
    d = 8 + (k if kind == 'pca' and 'n_components' in params else 0)
    x = np.random.default_rng(0).normal(size=(2 * (k + d) + 16, d))
    probe = clone(est)
    if 'max_iter' in probe.get_params() and 'max_iter' not in params:
        probe.set_params(max_iter=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            probe.fit(x)
    except (ValueError, TypeError) as e:
        raise ScoringError(f'invalid parameter for {what} {kind!r}: {e}') \
            from e


def _fit(est, fn, x, what, kind):
    """``fn(x)``; the parameters were checked by _check_by_fitting, so a
    ValueError here is about the data."""
    try:
        return fn(x)
    except ValueError as e:
        raise ScoringError(f'{what} {kind!r} failed on {x.shape[0]} x '
                           f'{x.shape[1]} embeddings: {e}') from e


def _jsonable(v):
    if isinstance(v, (np.integer, )):
        return int(v)
    if isinstance(v, (np.floating, )):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def reduce_embeddings(x: np.ndarray, reducer: Optional[Mapping] = None,
                      seed: Optional[int] = 0, logger=None,
                      return_estimator: bool = False
                      ) -> Tuple[np.ndarray, Optional[dict]]:
    """Reduce ``x`` (N, D) with PCA (or not); return (z, record).

    ``reducer`` is ``None``/``dict(type='none')`` or
    ``dict(type='pca', n_components=..., whiten=..., svd_solver=..., ...)``
    with any :class:`sklearn.decomposition.PCA` parameter. When
    ``n_components`` exceeds min(N, D) it is lowered to min(N, D) (logged;
    both values recorded).
    """
    x = check_embeddings(x)
    kind, params = _split_cfg(reducer, REDUCER_TYPES, 'reducer')
    if kind == 'none':
        return (x, dict(type='none'), None) if return_estimator else \
            (x, dict(type='none'))
    requested = params.get('n_components', None)
    limit = min(x.shape)
    if isinstance(requested, int) and requested > limit:
        msg = (f'PCA n_components={requested} exceeds min(N={x.shape[0]}, '
               f'D={x.shape[1]}); using n_components={limit}')
        if logger is not None:
            logger.warning(msg)
        params['n_components'] = limit
    est = _make_estimator('pca', params, 'reducer', seed)
    if est.get_params()['svd_solver'] == 'randomized' and \
            params.get('n_components') == limit:
        # randomized SVD needs n_components < min(N, D)
        est.set_params(svd_solver='full')
    z = _fit(est, est.fit_transform, x, 'reducer', 'pca')
    z = np.ascontiguousarray(z, dtype=np.float32)
    record = dict(type='pca', n_components_requested=requested,
                  **{k: _jsonable(v) for k, v in est.get_params().items()})
    record['explained_variance_ratio_sum'] = float(
        np.sum(est.explained_variance_ratio_))
    return (z, record, est) if return_estimator else (z, record)


def cluster_embeddings(z: np.ndarray, clusterer: Optional[Mapping] = None,
                       seed: Optional[int] = 0,
                       return_estimator: bool = False
                       ) -> Tuple[np.ndarray, dict]:
    """Cluster ``z`` (N, d); return (raw labels with -1 = noise, record).

    ``clusterer`` is ``dict(type=T, **params)`` with T one of 'kmeans'
    (:class:`sklearn.cluster.KMeans`), 'gmm'
    (:class:`sklearn.mixture.GaussianMixture`, ``n_components`` = number of
    clusters), 'dbscan', 'hdbscan' and any parameter of that estimator.
    ``n_clusters='auto'`` (KMeans) / ``n_components='auto'`` (GMM) use
    :func:`auto_n_clusters`. ``random_state`` defaults to ``seed``.
    """
    z = check_embeddings(z)
    cfg = copy.deepcopy(dict(DEFAULT_CLUSTERER if clusterer is None
                             else clusterer))
    kind, params = _split_cfg(cfg, None, 'clusterer')
    spec = get_clusterer(kind)
    n = z.shape[0]
    auto_key = spec.auto_param
    auto = False
    if auto_key and params.get(auto_key) == 'auto':
        params[auto_key] = auto_n_clusters(n)
        auto = True
    if auto_key and isinstance(params.get(auto_key), int) and \
            params[auto_key] > n:
        raise ScoringError(
            f'clusterer {kind!r}: {auto_key}={params[auto_key]} exceeds the '
            f'number of samples ({n}); lower {auto_key} or use \'auto\'')
    for k, v in spec.defaults.items():
        params.setdefault(k, v)
    est = _make_estimator(kind, params, 'clusterer', seed)
    labels = _fit(est, est.fit_predict, z, 'clusterer', kind)
    labels = np.asarray(labels, dtype=np.int64)
    record = dict(type=kind,
                  **{k: _jsonable(v) for k, v in est.get_params().items()
                     if k not in ('verbose', 'verbose_interval')})
    if auto:
        record[auto_key + '_rule'] = 'auto: round(sqrt(N)/2), >= 2'
    record['num_noise'] = int((labels == -1).sum())
    return (labels, record, est) if return_estimator else (labels, record)


def validate_scoring_params(reducer: Optional[Mapping],
                            clusterer: Optional[Mapping],
                            likelihood_def: str) -> None:
    """Check types, parameter names and values before any expensive work
    (embedding); raises ScoringError naming the problem."""
    if likelihood_def not in LIKELIHOOD_DEFS:
        raise ScoringError(f'unknown likelihood definition {likelihood_def!r};'
                           f' choose one of {list(LIKELIHOOD_DEFS)}')
    checks = []
    kind, params = _split_cfg(reducer, REDUCER_TYPES, 'reducer')
    if kind != 'none':
        checks.append(('reducer', kind, params))
    cfg = DEFAULT_CLUSTERER if clusterer is None else clusterer
    kind, params = _split_cfg(copy.deepcopy(dict(cfg)) if isinstance(
        cfg, Mapping) else cfg, None, 'clusterer')
    checks.append(('clusterer', kind, params))
    for what, kind, params in checks:
        auto = None if what == 'reducer' else get_clusterer(kind).auto_param
        params = {k: (2 if v == 'auto' and k == auto else v)
                  for k, v in params.items()}
        _make_estimator(kind, params, what, 0)  # checks the values too


def noise_to_singletons(labels) -> np.ndarray:
    """Map raw labels to cluster ids where every noise point (-1) is its own
    singleton cluster with a unique id (ids max_label+1, max_label+2, ...).
    Other labels are kept."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    if (labels < -1).any():
        raise ScoringError('cluster labels must be >= -1 (-1 = noise)')
    noise = np.flatnonzero(labels == -1)
    start = int(labels.max()) + 1 if (labels >= 0).any() else 0
    labels[noise] = np.arange(start, start + len(noise), dtype=np.int64)
    return labels


def cluster_sizes(cluster_id) -> np.ndarray:
    """Per-sample size of the sample's cluster."""
    cluster_id = np.asarray(cluster_id, dtype=np.int64)
    _, inverse, counts = np.unique(cluster_id, return_inverse=True,
                                   return_counts=True)
    return counts[inverse.reshape(-1)].astype(np.int64)


def size_likelihood(cluster_id, definition: str = 'largest') -> np.ndarray:
    """'largest': size / largest size; 'fraction': size / N."""
    sizes = cluster_sizes(cluster_id).astype(np.float64)
    if definition == 'largest':
        return sizes / sizes.max()
    if definition == 'fraction':
        return sizes / float(len(sizes))
    raise ScoringError(f'size_likelihood: unknown definition {definition!r}; '
                       "use 'largest' or 'fraction'")


def knn_radius(train_z: np.ndarray, k: int, query=None) -> np.ndarray:
    """The kNN radius r: for each training sample the distance to its
    ``k``-th nearest *other* training sample (``query`` None; ``k`` at
    most N - 1), or for each ``query`` point the distance to its ``k``-th
    nearest training sample. float64."""
    from sklearn.neighbors import NearestNeighbors
    if query is None:
        nn = NearestNeighbors(n_neighbors=k + 1).fit(train_z)
        return nn.kneighbors(train_z)[0][:, -1].astype(np.float64)
    nn = NearestNeighbors(n_neighbors=k).fit(train_z)
    return nn.kneighbors(np.asarray(query, np.float32))[0][:, -1].astype(
        np.float64)


def density_from_radius(r: np.ndarray, rmin: float) -> np.ndarray:
    """p = min(1, rmin / r), 1 where r = 0 (duplicates: densest possible)."""
    r = np.asarray(r, np.float64)
    p = np.ones(len(r), dtype=np.float64)
    pos = r > 0
    p[pos] = np.minimum(1.0, rmin / r[pos])
    return p


def density_k_eff(n: int, k: int) -> int:
    """The k actually used with ``n`` training samples (0: fewer than 2)."""
    return int(min(max(1, k), n - 1)) if n > 1 else 0


def min_positive(r: np.ndarray) -> float:
    return float(r[r > 0].min()) if (r > 0).any() else 0.0


def knn_density_likelihood(z: np.ndarray, k: int = 10) -> np.ndarray:
    """p_i = min_j r_j / r_i with r_i the distance to the k-th nearest other
    sample (see module docstring); duplicates (r = 0) get p = 1."""
    z = check_embeddings(z)
    k_eff = density_k_eff(z.shape[0], k)
    if not k_eff:
        return np.ones(z.shape[0], dtype=np.float64)
    r = knn_radius(z, k_eff)
    return density_from_radius(r, min_positive(r))


def score_embeddings(x, *, reducer: Optional[Mapping] = DEFAULT_REDUCER,
                     clusterer: Optional[Mapping] = DEFAULT_CLUSTERER,
                     likelihood_def: str = DEFAULT_LIKELIHOOD,
                     density_k: int = 10, seed: Optional[int] = 0,
                     ids=None, logger=None) -> Dict:
    """Embeddings -> reduced -> clusters -> per-sample likelihoods.

    Returns a dict with ``likelihood`` (float64, N), ``cluster_id`` (int64,
    noise as singletons), ``cluster_size`` (int64), ``raw_labels`` (-1 =
    noise), ``reduced`` (float32, N x d), the ``reducer``/``clusterer``
    records (types + all parameters used) and ``scorer``, the
    :class:`FittedScorer` that scores other samples against this fit.
    """
    if likelihood_def not in LIKELIHOOD_DEFS:
        raise ScoringError(f'unknown likelihood definition {likelihood_def!r};'
                           f' choose one of {list(LIKELIHOOD_DEFS)}')
    x = check_embeddings(x, ids)
    if x.shape[0] > 1 and float(np.ptp(x, axis=0).max()) == 0.0:
        raise ScoringError(
            f'all {x.shape[0]} embeddings are identical: the embedder '
            'carries no information about these samples (e.g. a randomly '
            'initialised backbone whose features vanish at this input size, '
            'or blank inputs). Use a checkpoint or a larger --input-size.')
    z, red_rec, red_est = reduce_embeddings(x, reducer, seed=seed,
                                            logger=logger,
                                            return_estimator=True)
    raw, clu_rec, clu_est = cluster_embeddings(z, clusterer, seed=seed,
                                               return_estimator=True)
    cid = noise_to_singletons(raw)
    size = cluster_sizes(cid)
    if likelihood_def == 'density':
        lik = knn_density_likelihood(z, k=density_k)
        clu_rec = dict(clu_rec, density=dict(method='knn', k=int(density_k),
                                             space='reduced'))
    else:
        lik = size_likelihood(cid, likelihood_def)
    scorer = FittedScorer.from_fit(red_est, clu_rec['type'], clu_est, z, raw,
                                   likelihood_def, density_k)
    return dict(likelihood=np.asarray(lik, dtype=np.float64), cluster_id=cid,
                cluster_size=size, raw_labels=raw, reduced=z,
                reducer=red_rec, clusterer=clu_rec,
                likelihood_def=likelihood_def, scorer=scorer)


# ------------------------------------------------------------ fitted scorer
SCORER_FORMAT = 'mmdet3d_equity.scorer'
SCORER_FORMAT_VERSION = 1


class FittedScorer:
    """The fitted reduction, clustering and likelihood definition of a
    training split, scoring other samples (e.g. the val split) on the
    training split's scale.

    Scoring a sample x "against the fitted clustering": z = the training
    PCA applied to x's embedding, then its cluster

    * ``kmeans``: the nearest centre (``KMeans.predict``);
    * ``gmm``: the most probable component (``GaussianMixture.predict``);
    * ``dbscan``: the cluster of the nearest core sample if that lies within
      ``eps`` (how DBSCAN admits a point to a cluster), else noise;
    * ``hdbscan``: refused for 'largest' / 'fraction' (scikit-learn's HDBSCAN
      cannot place new points); with 'density' the cluster fields are those
      of the nearest training sample, for information only;

    ``cluster_size`` = the number of training samples in that cluster; a
    sample in no training cluster (noise, or an empty component) is a
    singleton (size 1, a new cluster id), as training noise is. Then

    * ``'largest'``: p = size / largest training cluster size;
    * ``'fraction'``: p = size / number of training samples;
    * ``'density'``: p = min_j r_j / r(x), r(x) the distance from z to its
      k-th nearest training sample and min_j r_j the smallest such distance
      of the training samples (to their k-th nearest other sample), capped
      at 1; r(x) = 0 gives 1.
    """

    def __init__(self, kind: str, likelihood_def: str, settings: Mapping,
                 arrays: Mapping[str, np.ndarray]):
        self.kind = kind
        self.likelihood_def = likelihood_def
        self.settings = dict(settings)
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.train_z = self.arrays['train_z']
        self.train_raw = self.arrays['train_raw'].astype(np.int64)
        self.train_cid = noise_to_singletons(self.train_raw)

    # ---------------------------------------------------------- building
    @classmethod
    def from_fit(cls, pca_est, kind: str, clu_est, z, raw,
                 likelihood_def: str, density_k: int = 10) -> 'FittedScorer':
        """From the fitted sklearn estimators (``pca_est`` None without
        reduction) and the training reduced embeddings / raw labels."""
        z = np.asarray(z, dtype=np.float32)
        arrays = dict(train_z=z, train_raw=np.asarray(raw, np.int64))
        settings = dict(unsupported=None, has_pca=pca_est is not None)
        if pca_est is not None:
            arrays.update(pca_mean=pca_est.mean_,
                          pca_components=pca_est.components_,
                          pca_explained_variance=pca_est.explained_variance_)
            settings['whiten'] = bool(pca_est.whiten)
        spec = get_clusterer(kind)
        state, extra = spec.fitted_state(clu_est)
        arrays.update(state)
        settings.update(extra)
        if spec.cannot_assign and likelihood_def != 'density':
            settings['unsupported'] = spec.cannot_assign
        if likelihood_def == 'density':
            k_eff = density_k_eff(z.shape[0], density_k)
            rmin = min_positive(knn_radius(z, k_eff)) if k_eff else 0.0
            settings.update(density_k=int(density_k), k_eff=k_eff, rmin=rmin)
        return cls(kind, likelihood_def, settings, arrays)

    # ---------------------------------------------------------- applying
    def check_usable(self):
        if self.settings.get('unsupported'):
            raise ScoringError('this scorer cannot score other samples: ' +
                               self.settings['unsupported'])

    def transform(self, x) -> np.ndarray:
        """The training reduction (PCA) of embeddings ``x`` (N, D)."""
        x = check_embeddings(x)
        if not self.settings['has_pca']:
            if x.shape[1] != self.train_z.shape[1]:
                raise ScoringError(f'embeddings have dimension {x.shape[1]},'
                                   f' the training ones '
                                   f'{self.train_z.shape[1]}')
            return x
        mean = self.arrays['pca_mean']
        if x.shape[1] != mean.shape[0]:
            raise ScoringError(f'embeddings have dimension {x.shape[1]}, the '
                               f'scorer was fitted on {mean.shape[0]}: embed '
                               'with the same embedder as the training split')
        z = (x - mean) @ self.arrays['pca_components'].T
        if self.settings.get('whiten'):
            z = z / np.sqrt(self.arrays['pca_explained_variance'])
        return np.ascontiguousarray(z, dtype=np.float32)

    def assign(self, z) -> np.ndarray:
        """Raw cluster labels of reduced embeddings ``z`` (-1: none), by the
        clusterer's rule."""
        return get_clusterer(self.kind).assign(
            self.arrays, self.settings, np.asarray(z, dtype=np.float32),
            self.train_z, self.train_raw)

    def density(self, z) -> np.ndarray:
        k = self.settings['k_eff']
        if not k:
            return np.ones(len(z))
        return density_from_radius(knn_radius(self.train_z, k, query=z),
                                   self.settings['rmin'])

    def score(self, x) -> Dict:
        """Score embeddings ``x`` (N, D): ``likelihood``, ``cluster_id``
        (training ids; new singletons get ids above them), ``cluster_size``
        (training samples in the cluster, 1 for singletons), ``raw_labels``
        (-1: in no training cluster), ``reduced``."""
        self.check_usable()
        z = self.transform(x)
        raw = self.assign(z)
        labels, counts = np.unique(self.train_raw[self.train_raw >= 0],
                                   return_counts=True)
        size_of = dict(zip(labels.tolist(), counts.tolist()))
        size = np.array([size_of.get(int(r), 0) for r in raw], np.int64)
        single = size == 0
        cid = raw.copy()
        start = int(self.train_cid.max()) + 1
        cid[single] = np.arange(start, start + int(single.sum()))
        size[single] = 1
        if self.likelihood_def == 'largest':
            lik = size / float(cluster_sizes(self.train_cid).max())
        elif self.likelihood_def == 'fraction':
            lik = size / float(len(self.train_cid))
        else:
            lik = self.density(z)
        return dict(likelihood=np.asarray(lik, np.float64), cluster_id=cid,
                    cluster_size=size, raw_labels=np.where(single, -1, raw),
                    reduced=z)


def save_scorer(path: str, scorers: Mapping[str, FittedScorer],
                meta: Mapping, overwrite: bool = False) -> str:
    """Write fitted scorers (one per camera, or one) and their provenance
    to a ``.npz`` (arrays + one JSON string; no pickle)."""
    import json

    from ..utils.fileio import atomic_savez
    for s in scorers.values():
        s.check_usable()
    full = dict(meta, format=SCORER_FORMAT,
                format_version=SCORER_FORMAT_VERSION, scorers=[])
    arrays = {}
    for i, (name, s) in enumerate(scorers.items()):
        full['scorers'].append(dict(name=name, kind=s.kind,
                                    likelihood_def=s.likelihood_def,
                                    settings=s.settings))
        for k, v in s.arrays.items():
            arrays[f's{i}__{k}'] = v
    arrays['meta'] = np.asarray(json.dumps(full, sort_keys=True,
                                           default=_jsonable))
    return atomic_savez(path, overwrite=overwrite, **arrays)


def load_scorer(path: str):
    """Read :func:`save_scorer`'s file; returns (scorers, meta)."""
    import json
    import os.path as osp
    from collections import OrderedDict
    if not osp.isfile(path):
        raise ScoringError(f'scorer file {path} not found; write it with '
                           'tools/compute_likelihoods.py ... --save-scorer')
    fix = 'write it again with tools/compute_likelihoods.py --save-scorer'
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, 'files'):
                raise ValueError('not an .npz archive')
            data = {k: f[k] for k in f.files}
        meta = json.loads(str(data.pop('meta')))
    except Exception as e:  # any bytes: truncated zip, no meta, bad JSON
        raise ScoringError(f'scorer file {path} cannot be read '
                           f'({type(e).__name__}: {e}); {fix}') from e
    if not isinstance(meta, dict) or \
            meta.get('format') != SCORER_FORMAT or \
            meta.get('format_version') != SCORER_FORMAT_VERSION:
        got = meta if not isinstance(meta, dict) else dict(
            format=meta.get('format'), version=meta.get('format_version'))
        raise ScoringError(f'{path} is not a version-{SCORER_FORMAT_VERSION} '
                           f'{SCORER_FORMAT} file (found {got!r}); {fix}')
    entries = meta.get('scorers')
    if not isinstance(entries, list) or not entries or not all(
            isinstance(s, dict) and isinstance(s.get('name'), str)
            and isinstance(s.get('kind'), str)
            and s.get('likelihood_def') in LIKELIHOOD_DEFS
            and isinstance(s.get('settings'), dict) for s in entries):
        raise ScoringError(f'scorer file {path} has a malformed scorer list '
                           '(each entry: name, kind, likelihood_def, '
                           f'settings); {fix}')
    scorers = OrderedDict()
    for i, s in enumerate(entries):
        pre = f's{i}__'
        arrays = {k[len(pre):]: v for k, v in data.items()
                  if k.startswith(pre)}
        if 'train_z' not in arrays or 'train_raw' not in arrays:
            raise ScoringError(f'scorer file {path} lacks the arrays of '
                               f'scorer {s["name"]!r}; {fix}')
        try:
            get_clusterer(s['kind'])
            scorers[s['name']] = FittedScorer(s['kind'], s['likelihood_def'],
                                              s['settings'], arrays)
        except ScoringError as e:
            raise ScoringError(f'scorer file {path}: {e}; {fix}') from e
        except Exception as e:  # arrays of the wrong type or shape
            raise ScoringError(f'scorer file {path}: scorer {s["name"]!r} '
                               f'is malformed ({type(e).__name__}: {e}); '
                               f'{fix}') from e
    return scorers, meta
