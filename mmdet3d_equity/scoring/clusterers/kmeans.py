"""KMeans (``'kmeans'``, :class:`sklearn.cluster.KMeans`), the default:
k-means++ with one init; new samples go to the nearest centre."""
import numpy as np

from ..registry import CLUSTERERS
from .base import BaseClusterer


@CLUSTERERS.register_module('kmeans')
class KMeansClusterer(BaseClusterer):
    name = 'kmeans'
    preset = dict(n_clusters='auto', n_init=1, max_iter=100)
    auto_param = 'n_clusters'

    @staticmethod
    def estimator_class():
        from sklearn.cluster import KMeans
        return KMeans

    def fitted_state(self, est):
        return dict(kmeans_centers=est.cluster_centers_), {}

    def assign(self, arrays, settings, z, train_z, train_raw):
        """The nearest centre (``KMeans.predict``), in float64."""
        c = arrays['kmeans_centers'].astype(np.float64)
        out = np.empty(len(z), np.int64)
        for s in range(0, len(z), 1024):  # bounded memory
            zz = np.asarray(z[s:s + 1024], np.float64)
            out[s:s + 1024] = ((zz[:, None, :] - c[None]) ** 2).sum(
                -1).argmin(1)
        return out
