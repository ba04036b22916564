"""Foundation: errors, config loading and checks, file output, sample
identity and the likelihood file format. Imports nothing else of the
package."""
from .identity import (
                       dataset_fingerprint,
                       dataset_sample_identity,
                       find_datasets,
                       id_key_of,
                       index_identities,
                       leaf_datasets,
                       raw_data_info,
                       sample_identity,
                       samples_fingerprint,
                       wrapped_indices,
)
from .likelihood_file import (
                       LikelihoodFileError,
                       build_record,
                       content_fingerprint,
                       load_likelihood_file,
                       save_likelihood_file,
                       validate_record,
)
from .point_files import check_point_file, check_point_files

__all__ = [
    'dataset_fingerprint', 'dataset_sample_identity', 'find_datasets',
    'id_key_of', 'index_identities', 'leaf_datasets', 'raw_data_info',
    'sample_identity', 'samples_fingerprint', 'wrapped_indices',
    'LikelihoodFileError', 'build_record', 'content_fingerprint',
    'load_likelihood_file', 'save_likelihood_file', 'validate_record',
    'check_point_file', 'check_point_files'
]
