from .identity import dataset_fingerprint, id_key_of, sample_identity  # noqa: F401,E501
from .likelihood_file import (LikelihoodFileError, build_record,  # noqa: F401
                              likelihood_map, load_likelihood_file,
                              save_likelihood_file, validate_record)
