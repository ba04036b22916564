"""Appearance scoring (DatasetEquity steps 1-3).

Training needs only the sample identity and the likelihood file
(:mod:`mmdet3d_equity.utils`). The scoring pipeline (embedders,
clustering, the split source) is imported on first use of one of its
names, so that ``custom_imports=['mmdet3d_equity']`` does not load it.
Extension points: :data:`EMBEDDERS`, :data:`CLUSTERERS` (docs/extending.md).
"""
import importlib

#: name -> submodule, imported on first access (PEP 562)
_LAZY = {
    **dict.fromkeys(('EMBEDDERS', 'CLUSTERERS'), 'registry'),
    **dict.fromkeys(
        ('DEFAULT_CLUSTERER', 'DEFAULT_LIKELIHOOD', 'DEFAULT_REDUCER',
         'LIKELIHOOD_DEFS', 'ScoringError', 'FittedScorer',
         'auto_n_clusters', 'cluster_embeddings', 'cluster_sizes',
         'clusterer_types', 'knn_density_likelihood', 'noise_to_singletons',
         'reduce_embeddings', 'score_embeddings', 'size_likelihood'),
        'clustering'),
    **dict.fromkeys(('CAMERA_AGGREGATIONS', 'combine_camera_scores',
                     'cluster_table'), 'cameras'),
    **dict.fromkeys(('Split', 'unwrap_dataset_cfg'), 'dataset_source'),
    **dict.fromkeys(('ScoringSettings', ), 'settings'),
    **dict.fromkeys(('CheckpointMismatchError', 'DetectorEmbedder',
                     'EmbeddingError', 'ImageBackboneEmbedder',
                     'PointStatsEmbedder', 'BaseEmbedder'), 'embedders'),
    **dict.fromkeys(('BaseClusterer', ), 'clusterers'),
    **dict.fromkeys(('compute_likelihoods', 'embed_split', 'score_split'),
                    'pipeline'),
    **dict.fromkeys(('score_other_split', ), 'split_scoring'),
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
