"""Semantic-scale measures, object features and the per-class feature store."""
from .measures import (class_scales, class_scales_from_stats,  # noqa: F401
                       imbalance_summary, inter_class_term,
                       marginal_effect_curve, semantic_scale,
                       semantic_scale_from_scatter, ssb_class_weights)

__all__ = [
    'semantic_scale', 'semantic_scale_from_scatter', 'inter_class_term',
    'class_scales', 'class_scales_from_stats', 'ssb_class_weights',
    'imbalance_summary', 'marginal_effect_curve'
]
