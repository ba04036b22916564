"""Adapter of ``Anchor3DHead`` (PointPillars, SECOND, ...)."""
from mmdet3d.models.dense_heads import Anchor3DHead

from .base import HEAD_ADAPTERS, BEVHeadAdapter


@HEAD_ADAPTERS.register_module()
class Anchor3DHeadAdapter(BEVHeadAdapter):
    """``forward`` -> (cls_scores, bbox_preds, dir_cls_preds), each a list
    over levels of batch-first maps; they feed ``loss_cls``, ``loss_bbox``
    and ``loss_dir``. Object features: the BEV head input at the box centre
    (subclasses such as ShapeAwareHead included)."""

    head_class = Anchor3DHead
    detectors = dict(VoxelNet='bbox_head', DynamicVoxelNet='bbox_head',
                     MVXTwoStageDetector='pts_bbox_head',
                     MVXFasterRCNN='pts_bbox_head',
                     DynamicMVXFasterRCNN='pts_bbox_head')
    terms = ('cls', 'bbox', 'dir')

    def present_terms(self, head):
        return tuple(t for t in self.terms
                     if t != 'dir' or head.use_direction_classifier)

    def num_classes(self, head):
        # with a softmax loss the head counts a background class as well
        return int(head.num_classes) - (0 if head.use_sigmoid_cls else 1)
