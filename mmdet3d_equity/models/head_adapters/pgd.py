"""Adapter of ``PGDHead`` (PGD; without its depth classifier for exact
per-sample weighting)."""
from mmdet3d.models.dense_heads import PGDHead

from .base import HEAD_ADAPTERS, UnsupportedHeadError
from .fcos_mono3d import FCOSMono3DHeadAdapter


@HEAD_ADAPTERS.register_module()
class PGDHeadAdapter(FCOSMono3DHeadAdapter):
    """``forward`` -> (cls, bbox, dir, depth_cls, depth_weight, attr,
    centerness), each a list over FPN levels. ``bbox`` also feeds
    ``loss_kpts``, ``loss_bbox2d`` and ``loss_consistency``; ``depth_cls``
    the fused ``loss_depth``, ``depth_weight`` its uncertainty. Object
    features as FCOS3D."""

    head_class = PGDHead
    terms = ('cls', 'bbox', 'dir', 'depth_cls', 'depth_weight', 'attr',
             'centerness')

    def check_exact(self, head):
        super().check_exact(head)
        if head.use_depth_classifier:
            raise UnsupportedHeadError(
                'PGDHead with use_depth_classifier=True mixes direct and '
                'classified depth inside the loss through its learnable '
                '`fuse_lambda`, which does not pass through the head outputs, '
                'so the per-sample weighting of its gradient cannot be exact. '
                'Set bbox_head.use_depth_classifier=False, or use the '
                'resampling mode (EquityWeightedSampler), or SMOKE / FCOS3D.')

    def disabled_terms(self, head) -> set:
        off = super().disabled_terms(head)
        if not head.use_depth_classifier:
            off.add('depth_cls')
        if head.weight_dim == -1:
            off.add('depth_weight')
        return off
