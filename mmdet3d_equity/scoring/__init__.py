"""Appearance scoring (DatasetEquity steps 1-3).

Training needs only the sample identity and the likelihood file
(:mod:`mmdet3d_equity.utils`). The scoring pipeline (embedders, clustering, the training
split source) is imported on first use of one of its names, so that
``custom_imports=['mmdet3d_equity']`` does not load it.
"""
import importlib


#: name -> submodule, imported on first access (PEP 562)
_LAZY = {
    **dict.fromkeys(
        ('CLUSTERER_TYPES', 'DEFAULT_CLUSTERER', 'DEFAULT_LIKELIHOOD',
         'DEFAULT_REDUCER', 'LIKELIHOOD_DEFS', 'ScoringError',
         'auto_n_clusters', 'cluster_embeddings', 'cluster_sizes',
         'combine_camera_scores', 'knn_density_likelihood',
         'noise_to_singletons', 'reduce_embeddings', 'score_embeddings',
         'size_likelihood'), 'clustering'),
    **dict.fromkeys(('TrainSplit', 'unwrap_train_dataset_cfg'),
                    'dataset_source'),
    **dict.fromkeys(('CheckpointMismatchError', 'DetectorEmbedder',
                     'EmbeddingError', 'ImageBackboneEmbedder'),
                    'embedders'),
    **dict.fromkeys(('CAMERA_AGGREGATIONS', 'compute_likelihoods',
                     'embed_split', 'score_split'), 'pipeline'),
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(
            f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{module}', __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
