"""HDBSCAN (``'hdbscan'``, :class:`sklearn.cluster.HDBSCAN`); noise points
become singletons. scikit-learn's HDBSCAN cannot place new samples, so
other splits are scored only with the 'density' likelihood (the cluster
fields are then those of the nearest training sample, for information)."""
from ..registry import CLUSTERERS
from .base import BaseClusterer


@CLUSTERERS.register_module('hdbscan')
class HDBSCANClusterer(BaseClusterer):
    name = 'hdbscan'
    defaults = dict(copy=True)  # never modify the caller's array
    cannot_assign = (
        "scikit-learn's HDBSCAN cannot place new samples in a fitted "
        'clustering; use --clusterer kmeans/gmm/dbscan or --likelihood '
        'density')

    @staticmethod
    def estimator_class():
        from sklearn.cluster import HDBSCAN
        return HDBSCAN

    def assign(self, arrays, settings, z, train_z, train_raw):
        from sklearn.neighbors import NearestNeighbors
        idx = NearestNeighbors(n_neighbors=1).fit(train_z).kneighbors(z)[1]
        return train_raw[idx[:, 0]]
