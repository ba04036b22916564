"""Foundation: errors, config loading and checks, file output, sample
identity and the likelihood file format. Imports nothing else of the
package."""
from .identity import (dataset_fingerprint, dataset_sample_identity,
                       id_key_of, raw_data_info, sample_identity)
from .likelihood_file import (LikelihoodFileError, build_record,
                              content_fingerprint, convert_likelihood_file,
                              likelihood_map, load_likelihood_file,
                              save_likelihood_file, validate_record)

__all__ = [
    'dataset_fingerprint', 'dataset_sample_identity', 'id_key_of',
    'raw_data_info', 'sample_identity', 'LikelihoodFileError',
    'build_record', 'content_fingerprint', 'convert_likelihood_file',
    'likelihood_map', 'load_likelihood_file', 'save_likelihood_file',
    'validate_record'
]
