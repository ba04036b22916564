"""Multi-seed, multi-arm benchmark of baseline vs method arms."""
from .core import preflight, run_benchmark
from .spec import (
    Arm,
    Spec,
    SpecError,
    load_spec_file,
    make_arm,
    parse_arm_arg,
)
from .stats import (
    kish_effective_sample_size,
    paired_difference,
    spread,
    weight_shares,
)

__all__ = [
    'Arm', 'Spec', 'SpecError', 'load_spec_file', 'make_arm',
    'parse_arm_arg', 'preflight', 'run_benchmark',
    'kish_effective_sample_size', 'paired_difference', 'spread',
    'weight_shares'
]
