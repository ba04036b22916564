"""Gaussian mixture (``'gmm'``, :class:`sklearn.mixture.GaussianMixture`,
``n_components`` = number of clusters); new samples go to the most
probable component."""
import numpy as np

from ..registry import CLUSTERERS
from .base import BaseClusterer


def gmm_log_prob(z, weights, means, precisions_cholesky, covariance_type):
    """(N, K) log of weight_k * N(z; mean_k, cov_k) for every covariance
    type of scikit-learn (its Cholesky factors of the precisions)."""
    z = np.asarray(z, np.float64)
    n, d = z.shape
    pc = precisions_cholesky
    out = np.empty((n, len(weights)))
    for k in range(len(weights)):
        diff = z - means[k]
        if covariance_type == 'full':
            y, logdet = diff @ pc[k], np.log(np.diag(pc[k])).sum()
        elif covariance_type == 'tied':
            y, logdet = diff @ pc, np.log(np.diag(pc)).sum()
        elif covariance_type == 'diag':
            y, logdet = diff * pc[k], np.log(pc[k]).sum()
        else:  # spherical
            y, logdet = diff * pc[k], d * np.log(pc[k])
        out[:, k] = -0.5 * (d * np.log(2 * np.pi) + (y * y).sum(1)) + \
            logdet + np.log(weights[k])
    return out


@CLUSTERERS.register_module('gmm')
class GMMClusterer(BaseClusterer):
    name = 'gmm'
    preset = dict(n_components='auto', covariance_type='diag')
    auto_param = 'n_components'

    @staticmethod
    def estimator_class():
        from sklearn.mixture import GaussianMixture
        return GaussianMixture

    def fitted_state(self, est):
        return (dict(gmm_weights=est.weights_, gmm_means=est.means_,
                     gmm_precisions_cholesky=est.precisions_cholesky_),
                dict(covariance_type=est.covariance_type))

    def assign(self, arrays, settings, z, train_z, train_raw):
        return gmm_log_prob(z, arrays['gmm_weights'], arrays['gmm_means'],
                            arrays['gmm_precisions_cholesky'],
                            settings['covariance_type']).argmax(1).astype(
                                np.int64)
