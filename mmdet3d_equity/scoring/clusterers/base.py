"""The clusterer interface: what every entry of :data:`CLUSTERERS` offers.

A clusterer wraps one scikit-learn estimator class (any of its parameters
can be set; the parameters used are recorded) and says how a fitted
clustering places new samples, so that other splits can be scored against
the training fit (:class:`~..clustering.FittedScorer`):

* ``estimator_class()``: the scikit-learn class (``fit_predict``);
* ``preset``: the CLI's starting parameters (``--clusterer NAME``);
* ``auto_param``: the parameter that ``'auto'`` sets to
  :func:`~..clustering.auto_n_clusters` (None: no such parameter);
* ``fitted_state(est)``: ``(arrays, settings)`` of a fitted estimator,
  saved in the scorer file (arrays + JSON, no pickle); set
  ``settings['unsupported']`` to a reason when it cannot be saved;
* ``assign(arrays, settings, z, train_z, train_raw)``: raw labels (-1: in
  no cluster) of new reduced embeddings ``z``;
* ``cannot_assign``: a reason when ``assign`` is impossible for the
  size-based likelihoods ('largest', 'fraction'), else None.
"""
from typing import Dict, Mapping, Optional, Tuple

import numpy as np


class BaseClusterer:
    #: registry name, recorded as the clusterer's ``type``
    name = 'clusterer'
    #: starting parameters of ``--clusterer NAME`` (without ``type``)
    preset: Dict = {}
    #: parameter set by ``'auto'``
    auto_param: Optional[str] = None
    #: why new samples cannot be placed (size likelihoods), or None
    cannot_assign: Optional[str] = None
    #: parameters set when not given (e.g. HDBSCAN's copy=True)
    defaults: Dict = {}

    @staticmethod
    def estimator_class():
        raise NotImplementedError('estimator_class')

    def fitted_state(self, est) -> Tuple[Dict[str, np.ndarray], Dict]:
        return {}, {}

    def assign(self, arrays: Mapping[str, np.ndarray], settings: Mapping,
               z: np.ndarray, train_z: np.ndarray,
               train_raw: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f'{type(self).__name__}.assign')
