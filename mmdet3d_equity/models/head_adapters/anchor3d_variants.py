"""Adapters of the ``Anchor3DHead`` subclasses in the mmdet3d wheel whose
losses keep the per-sample form: ``ShapeAwareHead`` (SSN) and
``FreeAnchor3DHead``; and the refusal of ``MonoFlexHead``."""
from mmdet3d.models.dense_heads import (
    FreeAnchor3DHead,
    MonoFlexHead,
    ShapeAwareHead,
)

from .anchor3d import Anchor3DHeadAdapter
from .base import HEAD_ADAPTERS, RefusedHeadAdapter, UnsupportedHeadError


@HEAD_ADAPTERS.register_module()
class ShapeAwareHeadAdapter(Anchor3DHeadAdapter):
    """SSN: ``forward`` -> (cls_scores, bbox_preds, dir_cls_preds), lists
    over input levels of ``[B, anchors, C]`` tensors (every task head's
    anchors concatenated, batch first). ``loss_single`` normalises by the
    batch's positives (+ negatives with sampling): target counts. Object
    features: the BEV head input at the box centre."""

    head_class = ShapeAwareHead
    detectors = dict(MVXFasterRCNN='pts_bbox_head',
                     MVXTwoStageDetector='pts_bbox_head',
                     VoxelNet='bbox_head')


@HEAD_ADAPTERS.register_module()
class FreeAnchor3DHeadAdapter(Anchor3DHeadAdapter):
    """FreeAnchor: the Anchor3DHead outputs feed a positive bag loss (per
    object, over its top-k anchors of its own sample; class, box and
    direction) normalised by the batch's object count, and a negative bag
    loss normalised by objects x top-k. Matching runs under ``no_grad``.

    mmdet3d 1.4's ``loss_by_feat`` computes the negative bag loss from
    ``cls_prob``, the loop variable of the per-sample loop, i.e. the *last*
    sample's class probabilities, broadcast against every sample's anchor
    probabilities (mmdet's 2D FreeAnchor uses the whole batch). The
    weighting is exact for the loss as written -- the gradient is that of
    sum_b w_b L_b -- so that term's gradient reaches only the last sample
    and carries its weight. The classification loss is computed inline,
    not by ``loss_cls``, so SSB is refused."""

    head_class = FreeAnchor3DHead
    detectors = dict(MVXFasterRCNN='pts_bbox_head',
                     MVXTwoStageDetector='pts_bbox_head',
                     VoxelNet='bbox_head')

    def check_ssb(self, head):
        raise UnsupportedHeadError(
            'FreeAnchor3DHead computes its classification loss inline '
            '(positive and negative bag losses of the sigmoid scores) and '
            'never calls its loss_cls, so a semantic-scale-balanced loss_cls '
            'would silently change nothing. SSB needs a head whose '
            'classification loss is the module at loss_cls (e.g. '
            'Anchor3DHead, ShapeAwareHead).')


@HEAD_ADAPTERS.register_module()
class MonoFlexHeadAdapter(RefusedHeadAdapter):
    head_class = MonoFlexHead
    detectors = dict(SingleStageMono3DDetector='bbox_head')
    reason = ('its training is broken in mmdet3d 1.4: MonoFlexHead.loss() '
              'calls self.loss(*loss_inputs) instead of loss_by_feat, so a '
              'training step recurses until Python stops it '
              '(RecursionError), with or without this plugin. Fix: patch '
              'that line to self.loss_by_feat(*loss_inputs) in your '
              'mmdet3d and register an adapter (docs/extending.md), or '
              'train FCOS3D / PGD / SMOKE.')
