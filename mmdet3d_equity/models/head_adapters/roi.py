"""Adapters of the two-stage LiDAR detectors' RoI heads: PartA2
(``PartAggregationROIHead``) and PV-RCNN (``PVRCNNRoiHead``), weighted
together with their RPN (``PartA2RPNHead``, an ``Anchor3DHead``).

A two-stage detector's loss is the RPN loss (batch-first BEV maps: the
Anchor3DHead mechanism) plus the RoI head's: a segmentation loss over
voxels (PartA2) or keypoints (PV-RCNN), whose rows carry their sample in
``coors[:, 0]`` / ``keypoints[:, 0]``, and the box head's losses over RoI
rows, which carry their sample in ``rois[:, 0]``. Every normaliser is a
count of the batch's targets (positives, summed label / box weights), so
the loss is ``sum_b L_b`` and scaling the gradient of every row by the
weight of its sample is exact. The RPN proposals reach the RoI head
detached (mmdet's ``select_single_mlvl``), so the two stages share no
gradient path through the RPN outputs.

The rows' sample indices are read by forward hooks where the detector
hands them over: the voxel coordinates at the ``middle_encoder`` input
(PartA2), the keypoints at the ``points_encoder`` output (PV-RCNN), and the
RoIs at the RoI extractor input.

PV-RCNN trap: ``PVRCNNRoiHead`` multiplies the keypoint features by
``seg_preds.sigmoid()`` *without detaching* before the RoI pooling, so the
segmentation output also feeds the box losses. Scaling the gradient of
``seg_preds`` at the semantic head's output would weight that RoI path a
second time (w^2); the adapter instead scales the prediction at the input
of the segmentation loss (``semantic_head.loss_seg``), so each path is
weighted once. PartA2's semantic head detaches what it hands on
(``part_feats``), which the adapter checks.
"""
from typing import Dict, List

from mmdet3d.models.dense_heads import PartA2RPNHead
from mmdet3d.models.roi_heads import PartAggregationROIHead, PVRCNNRoiHead

from .anchor3d import Anchor3DHeadAdapter
from .base import HEAD_ADAPTERS, HeadAdapter, UnsupportedHeadError
from .grad_scale import scale_grad_by_index


@HEAD_ADAPTERS.register_module()
class PartA2RPNHeadAdapter(Anchor3DHeadAdapter):
    """``PartA2RPNHead``: ``Anchor3DHead``'s outputs and loss (renamed
    ``loss_rpn_*``); only ever weighted as the companion of a RoI head
    (two-stage detectors), whose adapter names the detectors."""

    head_class = PartA2RPNHead
    detectors: Dict[str, str] = {}


class RoIHeadAdapter(HeadAdapter):
    """Common part: the box head's outputs ``(cls_score, bbox_pred)``, rows
    in RoI order, scaled by the weight of ``rois[:, 0]`` captured at the
    input of :attr:`roi_extractor`. Subclasses add the semantic head."""

    companions = ('rpn_head', )
    roi_extractor = 'bbox_roi_extractor'
    box_terms = ('roi_cls', 'roi_bbox')

    def check_exact(self, head):
        for part in ('semantic_head', 'bbox_head'):
            sub = getattr(head, part, None)
            if sub is None:
                raise UnsupportedHeadError(
                    f'{type(head).__name__} has no {part}; per-sample '
                    'weighting supports the stock two-stage form only.')
            super().check_exact(sub)

    def install_weighting(self, head, weighting, detector=None) -> List:
        if detector is None:
            raise UnsupportedHeadError(
                f'{type(self).__name__} reads the rows\' sample indices from '
                'the detector; weight it through DetectorWeighting / '
                'EquityHook (which pass the detector).')
        state: Dict = {}

        def capture_rois(module, args):
            if len(args) < 4:
                raise RuntimeError(
                    f'{type(head).__name__}.{self.roi_extractor} was called '
                    f'with {len(args)} positional arguments; expected (feats,'
                    ' coordinates, batch indices, rois) as in mmdet3d 1.4')
            state['roi_batch'] = args[3][:, 0]

        def scale_box(module, args, output):
            w = weighting.current_weights()
            if w is None:
                return None
            weighting.count_call()
            if 'roi_batch' not in state:
                raise RuntimeError(
                    f'{type(head).__name__}.bbox_head ran without its RoI '
                    f'extractor {self.roi_extractor}; the rows cannot be '
                    'attributed to samples')
            index = state.pop('roi_batch')
            terms = weighting.terms
            cls_score, bbox_pred = output
            if 'roi_cls' in terms:
                cls_score = scale_grad_by_index(cls_score, w, index)
            if 'roi_bbox' in terms:
                bbox_pred = scale_grad_by_index(bbox_pred, w, index)
            return type(output)((cls_score, bbox_pred))

        extractor = getattr(head, self.roi_extractor)
        return [extractor.register_forward_pre_hook(capture_rois),
                head.bbox_head.register_forward_hook(scale_box)
                ] + self.install_semantic(head, weighting, detector)

    def install_semantic(self, head, weighting, detector) -> List:
        raise NotImplementedError

    def num_classes(self, head):
        return int(head.num_classes)

    def check_ssb(self, head):
        raise UnsupportedHeadError(
            f'{type(head).__name__}: SSB needs one classification loss over '
            'object classes; this RoI head classifies RoIs by IoU quality '
            '(class-agnostic) and segments foreground, so there is no class '
            'loss to balance. Apply SSB to the RPN (an Anchor3DHead) by '
            'training a one-stage detector, or use DatasetEquity weighting.')

    def setup_features(self, model, head, settings):
        raise UnsupportedHeadError(
            f'{type(head).__name__}: semantic-scale object features would be '
            'the RoI feature of the RoI matched to each ground-truth object, '
            'but the RoI-to-object matching lives in the RoI head\'s sampler '
            '(not a module output), and the RoI pooling ops need CUDA. '
            'Missing: the sampling result as a module output.')


@HEAD_ADAPTERS.register_module()
class PartAggregationROIHeadAdapter(RoIHeadAdapter):
    """PartA2. Terms: ``seg`` (``semantic_head.loss_seg`` from
    ``seg_preds``), ``part`` (``loss_part`` from ``part_preds``), both rows
    over voxels (sample = ``coors[:, 0]`` at the ``middle_encoder`` input);
    ``roi_cls`` and ``roi_bbox`` (box head: ``loss_cls``; ``loss_bbox`` and
    ``loss_corner``); the RPN's ``rpn_cls``, ``rpn_bbox``, ``rpn_dir``."""

    head_class = PartAggregationROIHead
    detectors = dict(PartA2='roi_head')
    terms = ('seg', 'part') + RoIHeadAdapter.box_terms

    def install_semantic(self, head, weighting, detector):
        encoder = getattr(detector, 'middle_encoder', None)
        if encoder is None:
            raise UnsupportedHeadError(
                f'{type(detector).__name__} has no middle_encoder, from whose '
                'input the voxels\' sample indices are read')
        state: Dict = {}

        def capture_coors(module, args):
            state['voxel_batch'] = args[1][:, 0]

        def scale_semantic(module, args, output):
            w = weighting.current_weights()
            if w is None or 'voxel_batch' not in state:
                return None
            part_feats = output.get('part_feats')
            if part_feats is not None and part_feats.requires_grad:
                raise UnsupportedHeadError(
                    'PointwiseSemanticHead.part_feats requires grad (mmdet3d '
                    '1.4 detaches it); the RoI path would be weighted twice.')
            out = dict(output)
            index = state['voxel_batch']
            for term, key in (('seg', 'seg_preds'), ('part', 'part_preds')):
                if term in weighting.terms:
                    out[key] = scale_grad_by_index(out[key], w, index)
            return out

        return [encoder.register_forward_pre_hook(capture_coors),
                head.semantic_head.register_forward_hook(scale_semantic)]


@HEAD_ADAPTERS.register_module()
class PVRCNNRoiHeadAdapter(RoIHeadAdapter):
    """PV-RCNN. Terms: ``seg`` (``semantic_head.loss_seg``; rows over
    keypoints, sample = ``keypoints[:, 0]`` at the ``points_encoder``
    output), scaled at the loss input, not at the semantic head output
    (the w^2 trap, module docstring); ``roi_cls``, ``roi_bbox``; the RPN's
    ``rpn_cls``, ``rpn_bbox``, ``rpn_dir``."""

    head_class = PVRCNNRoiHead
    detectors = dict(PointVoxelRCNN='roi_head')
    terms = ('seg', ) + RoIHeadAdapter.box_terms

    def install_semantic(self, head, weighting, detector):
        encoder = getattr(detector, 'points_encoder', None)
        if encoder is None:
            raise UnsupportedHeadError(
                f'{type(detector).__name__} has no points_encoder, from whose '
                'output the keypoints\' sample indices are read')
        state: Dict = {}

        def capture_keypoints(module, args, output):
            state['kp_batch'] = output['keypoints'][:, 0]

        def scale_seg_loss_input(module, args):
            w = weighting.current_weights()
            if w is None or 'seg' not in weighting.terms:
                return None
            if 'kp_batch' not in state:
                raise RuntimeError(
                    'PVRCNNRoiHead: the segmentation loss ran before the '
                    'points encoder; its rows cannot be attributed to '
                    'samples')
            pred = scale_grad_by_index(args[0], w, state['kp_batch'])
            return (pred, ) + tuple(args[1:])

        return [encoder.register_forward_hook(capture_keypoints),
                head.semantic_head.loss_seg.register_forward_pre_hook(
                    scale_seg_loss_input)]
