from .identity import (dataset_fingerprint, dataset_sample_identity,  # noqa: F401,E501
                       id_key_of, raw_data_info, sample_identity)
from .likelihood_file import (LikelihoodFileError, build_record,  # noqa: F401
                              likelihood_map, load_likelihood_file,
                              save_likelihood_file, validate_record)
from .clustering import (CLUSTERER_TYPES, DEFAULT_CLUSTERER,  # noqa: F401
                         DEFAULT_LIKELIHOOD, DEFAULT_REDUCER, LIKELIHOOD_DEFS,
                         ScoringError, auto_n_clusters, cluster_embeddings,
                         cluster_sizes, combine_camera_scores,
                         knn_density_likelihood, noise_to_singletons,
                         reduce_embeddings, score_embeddings, size_likelihood)
from .dataset_source import TrainSplit, unwrap_train_dataset_cfg  # noqa: F401
from .embedders import (CheckpointMismatchError, DetectorEmbedder,  # noqa: F401
                        EmbeddingError, ImageBackboneEmbedder)
from .pipeline import (CAMERA_AGGREGATIONS, compute_likelihoods,  # noqa: F401
                       embed_split, score_split)
