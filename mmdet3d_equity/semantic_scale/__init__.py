"""Semantic-scale measures, object features and the per-class feature store."""
from .features import (  # noqa: F401
                       HeadInputCapture,
                       ObjectFeatureSampler,
                       UnsupportedDetectorError,
                       sample_map,
)
from .measures import (  # noqa: F401
                       class_scales,
                       class_scales_from_stats,
                       imbalance_summary,
                       inter_class_term,
                       marginal_effect_curve,
                       semantic_scale,
                       semantic_scale_from_scatter,
                       semantic_scales_from_scatter,
                       ssb_class_weights,
)
from .store import ClassFeatureStore  # noqa: F401

__all__ = [
    'ObjectFeatureSampler', 'HeadInputCapture', 'UnsupportedDetectorError',
    'sample_map', 'ClassFeatureStore',
    'semantic_scale', 'semantic_scale_from_scatter',
    'semantic_scales_from_scatter', 'inter_class_term',
    'class_scales', 'class_scales_from_stats', 'ssb_class_weights',
    'imbalance_summary', 'marginal_effect_curve'
]
