"""Every error of the package, one base: :class:`EquityError`.

Each names the problem and the fix in its message; the command-line tools
print it as one line (``<tool>: error: <message>``, exit status 2) instead
of a traceback (catalogue: docs/errors.md). Each also derives from the
builtin exception it replaces (ValueError, OSError, TypeError), so callers
that caught those keep working.
"""


class EquityError(Exception):
    """The base of every mmdet3d-equity error: a problem with the user's
    input, config, data or outputs, with its fix in the message."""


class ConfigError(EquityError, ValueError):
    """A config file or option that cannot be used, with the fix."""


class ArgumentError(ConfigError, TypeError):
    """A config entry gives a component an argument it does not take (e.g.
    eta on EquityHook instead of its loss); names where it belongs."""


class OutputError(EquityError, OSError):
    """An output that cannot be written, with the fix."""


class OutputExistsError(OutputError, FileExistsError):
    """The output exists and the caller did not ask to overwrite it."""


class LikelihoodFileError(EquityError, ValueError):
    """A likelihood file that is missing, malformed or does not match."""


class ResultsError(EquityError, ValueError):
    """Results that cannot be read or do not hold what was asked for."""


class SpecError(ResultsError):
    """A benchmark specification that cannot be run, with the fix."""


class RunError(SpecError):
    """A training or test run failed; names the log to read."""


class SliceError(EquityError, ValueError):
    """A slice source or slice configuration that cannot be used, with the
    fix."""


class UnsupportedHeadError(EquityError, TypeError):
    """The plugin has no (exact) way to handle this head or detector."""


class UnsupportedDetectorError(UnsupportedHeadError):
    """The detector has no head the semantic-scale features support."""


class SampleFileError(EquityError, ValueError):
    """A training sample's data file is missing, empty or truncated."""


class StudyDataError(EquityError, ValueError):
    """An existing study data root that does not fit the study's size."""


class ScoringError(EquityError, ValueError):
    """Bad input to the scoring pipeline, with what to do about it."""


class EmbeddingError(ScoringError):
    """An input that cannot be embedded, with what to do about it."""


class CheckpointMismatchError(EmbeddingError):
    """A checkpoint whose weights do not fit the model built from the
    config."""


class SemanticScaleError(EquityError, ValueError):
    """A semantic-scale measurement that cannot run, with the fix."""


class EvalResultError(EquityError, ValueError):
    """An evaluation result file that cannot be read as per-class AP."""
