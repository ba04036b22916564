"""The extension points of scoring (mmengine registries).

* :data:`EMBEDDERS`: what turns a sample into an appearance vector
  (``'image'``, ``'detector'``, ``'points'``; :mod:`.embedders`);
* :data:`CLUSTERERS`: how the reduced embeddings are grouped
  (``'kmeans'``, ``'gmm'``, ``'dbscan'``, ``'hdbscan'``; :mod:`.clusterers`).

Register your own from your code (docs/extending.md)::

    from mmdet3d_equity.scoring import EMBEDDERS
    from mmdet3d_equity.scoring.embedders import BaseEmbedder

    @EMBEDDERS.register_module('my_embedder')
    class MyEmbedder(BaseEmbedder):
        ...

and score with ``embedder=dict(type='my_embedder', ...)``. The shipped
entries are imported on the first look-up (``locations``), so importing
this module loads no model code.
"""
from mmengine.registry import Registry

EMBEDDERS = Registry('equity embedder',
                     locations=['mmdet3d_equity.scoring.embedders'])
CLUSTERERS = Registry('equity clusterer',
                      locations=['mmdet3d_equity.scoring.clusterers'])
