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
