"""Clusterers (DatasetEquity step 2), one module each, registered in
:data:`~mmdet3d_equity.scoring.registry.CLUSTERERS`: ``'kmeans'`` (the
default), ``'gmm'``, ``'dbscan'``, ``'hdbscan'``; the interface is
:class:`.base.BaseClusterer`."""
from .base import BaseClusterer
from .dbscan import SCORER_DBSCAN_METRICS, DBSCANClusterer
from .gmm import GMMClusterer, gmm_log_prob
from .hdbscan import HDBSCANClusterer
from .kmeans import KMeansClusterer

__all__ = [
    'BaseClusterer', 'SCORER_DBSCAN_METRICS', 'DBSCANClusterer',
    'GMMClusterer', 'gmm_log_prob', 'HDBSCANClusterer', 'KMeansClusterer'
]
