"""DBSCAN (``'dbscan'``, :class:`sklearn.cluster.DBSCAN`); noise points
become singletons. A new sample joins the cluster of its nearest core
sample if that lies within ``eps`` (how DBSCAN admits a point), else it is
noise."""
import numpy as np

from ..registry import CLUSTERERS
from .base import BaseClusterer

#: DBSCAN metrics a saved scorer can reproduce (sklearn NearestNeighbors)
SCORER_DBSCAN_METRICS = ('euclidean', 'minkowski', 'manhattan', 'chebyshev',
                         'l1', 'l2', 'cityblock', 'cosine')


@CLUSTERERS.register_module('dbscan')
class DBSCANClusterer(BaseClusterer):
    name = 'dbscan'

    @staticmethod
    def estimator_class():
        from sklearn.cluster import DBSCAN
        return DBSCAN

    def fitted_state(self, est):
        params = est.get_params()
        settings = dict(eps=float(params['eps']), metric=params['metric'],
                        p=params['p'])
        if not isinstance(params['metric'], str) or params['metric'] \
                not in SCORER_DBSCAN_METRICS or params['metric_params']:
            settings['unsupported'] = (
                f"DBSCAN metric {params['metric']!r} (metric_params "
                f"{params['metric_params']!r}) cannot be saved; use one of"
                f' {SCORER_DBSCAN_METRICS} without metric_params')
        return (dict(dbscan_core=np.asarray(est.core_sample_indices_,
                                            np.int64)), settings)

    def assign(self, arrays, settings, z, train_z, train_raw):
        from sklearn.neighbors import NearestNeighbors
        core = arrays['dbscan_core']
        if len(core) == 0:
            return np.full(len(z), -1, np.int64)
        nn = NearestNeighbors(n_neighbors=1, metric=settings['metric'],
                              p=settings['p'] or 2).fit(train_z[core])
        dist, idx = nn.kneighbors(z)
        labels = train_raw[core[idx[:, 0]]]
        return np.where(dist[:, 0] <= settings['eps'], labels,
                        -1).astype(np.int64)
