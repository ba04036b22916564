"""Adapters of DETR-style query heads: outputs ``[L, B, Q, ...]``.

A query head returns, per decoder layer, class scores
``all_cls_scores`` ``[L, B, Q, C]`` and box predictions ``all_bbox_preds``
``[L, B, Q, code]`` -- as a tuple (mmdet's ``DETRHead`` family) or as a dict
that also holds the (unused) ``enc_cls_scores`` / ``enc_bbox_preds``
(mmdetection3d's projects ``PETRHead``, BEVFormer-style heads). Its loss
matches queries to ground truth per sample (Hungarian, on detached costs)
and normalises by counts of positives (+ ``bg_cls_weight`` x negatives),
which are reduced across GPUs where ``sync_cls_avg_factor`` or mmdet's
``reduce_mean`` says so: constants of the gradient. So the loss is
``sum_b L_b`` and scaling the gradient of sample b's slice (dimension 1)
of the two outputs by ``w_b`` is exact (under DDP too: every rank divides by
the same reduced count, and DDP's gradient averaging turns the per-rank sums
into the one-process sum).

A head from outside the wheels is registered by class name with one line
(:func:`register_query_head`); ``PETRHead`` is registered so here, so the
plugin never imports mmdetection3d's ``projects/``.
"""
from typing import Dict

import torch
from mmdet.models.dense_heads import (
    ConditionalDETRHead,
    DABDETRHead,
    DeformableDETRHead,
    DETRHead,
)

from .base import (
    EXTENDING_DOC,
    HEAD_ADAPTERS,
    HeadAdapter,
    RefusedHeadAdapter,
    UnsupportedHeadError,
)
from .grad_scale import scale_grad_per_sample

DICT_KEYS = ('all_cls_scores', 'all_bbox_preds')
ENC_KEYS = ('enc_cls_scores', 'enc_bbox_preds')


class QueryHeadAdapter(HeadAdapter):
    """``forward`` -> ``(all_cls_scores, all_bbox_preds)`` or a dict with
    these keys, each ``[L, B, Q, ...]`` (batch in dimension 1). ``cls``
    feeds ``loss_cls`` of every decoder layer, ``bbox`` ``loss_bbox`` (and
    ``loss_iou`` where the head has one)."""

    terms = ('cls', 'bbox')
    feature_kind = 'query'
    batch_dim = 1

    def scale_outputs(self, head, output, terms, w):
        name = type(head).__name__
        if isinstance(output, dict):
            missing = [k for k in DICT_KEYS if k not in output]
            if missing:
                raise RuntimeError(
                    f'{name}.forward returned a dict without {missing}; the '
                    'query-head adapter needs all_cls_scores and '
                    'all_bbox_preds ([L, B, Q, ...])')
            enc = [k for k in ENC_KEYS if output.get(k) is not None]
            if enc:
                raise UnsupportedHeadError(
                    f'{name} returned encoder proposals {enc} (two-stage '
                    'query head); their loss is not part of the per-sample '
                    'layout the adapter weights. Train without as_two_stage, '
                    'or use the resampling mode (EquityWeightedSampler).')
            out = dict(output)
            for term, key in zip(self.terms, DICT_KEYS):
                if term in terms:
                    out[key] = scale_grad_per_sample(out[key], w,
                                                     self.batch_dim)
            return out
        if not isinstance(output, (tuple, list)) or len(output) != 2:
            got = len(output) if isinstance(output, (tuple, list)) else \
                type(output).__name__
            raise RuntimeError(
                f'{name}.forward returned {got} outputs, expected 2 '
                '(all_cls_scores, all_bbox_preds); the head may have '
                'changed and the weighting would not be exact')
        out = [
            scale_grad_per_sample(t, w, self.batch_dim) if term in terms
            else t for term, t in zip(self.terms, output)
        ]
        return type(output)(out)

    # -- object features: the last decoder layer's embedding of the query
    # matched to a ground-truth object, labelled by the head's own targets
    def setup_features(self, model, head, settings):
        if not hasattr(head, '_get_targets_single'):
            raise UnsupportedHeadError(
                f'{type(head).__name__} has no _get_targets_single, from '
                'which the query features take the matched queries.')
        return settings

    def describe_features(self, head, settings):
        return (f'{type(head).__name__}: last decoder layer embedding of '
                'the query matched to each ground-truth object (the head\'s '
                'own Hungarian targets on the detached last-layer outputs)')

    def features_use_output(self, head) -> bool:
        return True

    def object_features_from_output(self, head, inputs, output,
                                    data_samples, settings):
        """Features ``(K, C)``: ``hidden_states[-1, b, q]`` of every query
        q that the head's targets assign to a ground-truth object."""
        hidden = inputs[0]
        if not torch.is_tensor(hidden) or hidden.dim() != 4:
            raise UnsupportedHeadError(
                f'{type(head).__name__}: query features read the decoder '
                'states [L, B, Q, C] given to the head; this head gets '
                f'{type(hidden).__name__} instead.')
        cls_scores, bbox_preds = (output[k] for k in DICT_KEYS) \
            if isinstance(output, dict) else output[:2]
        out_f, out_l = [], []
        for b, ds in enumerate(data_samples):
            labels, _, _, _, pos, _ = head._get_targets_single(
                cls_scores[-1, b].detach(), bbox_preds[-1, b].detach(),
                ds.gt_instances, ds.metainfo)
            lab = labels[pos].long()
            keep = settings.valid(lab)
            out_f.append(hidden[-1, b, pos[keep]])
            out_l.append(lab[keep])
        return torch.cat(out_f), torch.cat(out_l), 0


@HEAD_ADAPTERS.register_module()
class DETRHeadAdapter(QueryHeadAdapter):
    """mmdet's ``DETRHead`` (DETR): ``forward(hidden_states)``."""
    head_class = DETRHead
    detectors = dict(DETR='bbox_head')


@HEAD_ADAPTERS.register_module()
class ConditionalDETRHeadAdapter(QueryHeadAdapter):
    """mmdet's ``ConditionalDETRHead``: ``forward(hidden_states,
    references)``."""
    head_class = ConditionalDETRHead
    detectors = dict(ConditionalDETR='bbox_head')


@HEAD_ADAPTERS.register_module()
class DABDETRHeadAdapter(QueryHeadAdapter):
    """mmdet's ``DABDETRHead``."""
    head_class = DABDETRHead
    detectors = dict(DABDETR='bbox_head')


@HEAD_ADAPTERS.register_module()
class DeformableDETRHeadAdapter(QueryHeadAdapter):
    """mmdet's ``DeformableDETRHead`` without ``as_two_stage`` (the encoder
    proposals' loss is computed from transformer outputs that do not pass
    through the head)."""
    head_class = DeformableDETRHead
    detectors = dict(DeformableDETR='bbox_head')

    def check_exact(self, head):
        super().check_exact(head)
        if head.as_two_stage:
            raise UnsupportedHeadError(
                'DeformableDETRHead with as_two_stage=True adds the loss of '
                'the encoder proposals, which come from the transformer and '
                'not from the head outputs, so per-sample weighting would '
                'not be exact. Set as_two_stage=False or use the resampling '
                'mode (EquityWeightedSampler).')


@HEAD_ADAPTERS.register_module()
class DINOHeadAdapter(RefusedHeadAdapter):
    head_class_name = 'DINOHead'
    reason = ('its loss adds denoising queries and the encoder proposals of '
              'the two-stage transformer, which are not head outputs in the '
              '[L, B, Q, ...] layout. Use the resampling mode '
              '(EquityWeightedSampler).')


def register_query_head(head: str, detectors: Dict[str, str],
                        force: bool = True) -> type:
    """Register a DETR-style query head from outside the wheels by class
    name (one line; the head's code is never imported)::

        register_query_head('BEVFormerHead',
                            detectors=dict(BEVFormer='pts_bbox_head'))

    Use it for heads whose ``forward`` returns ``(all_cls_scores,
    all_bbox_preds)`` or a dict with these keys (``[L, B, Q, ...]``) and
    whose loss matches queries per sample with normalisers from target
    counts, as mmdet's ``DETRHead`` does. ``detectors``: detector type ->
    attribute holding the head, for detectors whose whole training loss is
    that head's. Replaces an adapter of the same name (``force``), e.g. a
    shipped refusal. Returns the adapter class."""
    if not isinstance(head, str) or not head.isidentifier():
        raise ValueError(f'register_query_head: head must be a class name, '
                         f'got {head!r}')
    if not isinstance(detectors, dict) or not all(
            isinstance(k, str) and isinstance(v, str)
            for k, v in detectors.items()):
        raise ValueError('register_query_head: detectors must map detector '
                         "type names to head attributes, e.g. dict(BEVFormer="
                         f"'pts_bbox_head'), got {detectors!r}")
    cls = type(f'{head}Adapter', (QueryHeadAdapter, ),
               dict(head_class_name=head, detectors=dict(detectors),
                    __module__=__name__,
                    __doc__=f'Query-head adapter of {head} (by name).'))
    HEAD_ADAPTERS.register_module(module=cls, force=force)
    return cls


class PETRHeadAdapter(QueryHeadAdapter):
    """mmdetection3d projects/PETR ``PETRHead`` (by class name):
    ``forward(mlvl_feats, img_metas)`` -> dict of ``all_cls_scores``
    ``[L, B, Q, C]`` and ``all_bbox_preds`` ``[L, B, Q, 10]``; the detector
    ``PETR`` calls it, then ``loss_by_feat``. Normalisers: positives +
    ``bg_cls_weight`` x negatives (max 1) and positives (min 1), per rank
    (PETR's ``sync_cls_avg_factor`` is commented out upstream). The decoder
    embedding is internal to its ``forward``, so object features are
    refused."""
    head_class_name = 'PETRHead'
    detectors = dict(PETR='pts_bbox_head')

    def setup_features(self, model, head, settings):
        raise UnsupportedHeadError(
            'PETRHead: semantic-scale object features would be the decoder '
            'embedding of the matched query, but PETRHead computes it inside '
            'its forward (transformer + branches) and returns only the class '
            'and box predictions, so no hook sees it in the batch layout. '
            'Missing: the decoder states as a head output or input. Use SSB '
            f'with another head, or register an adapter ({EXTENDING_DOC}).')


HEAD_ADAPTERS.register_module(module=PETRHeadAdapter)


@HEAD_ADAPTERS.register_module()
class DETR3DHeadAdapter(RefusedHeadAdapter):
    head_class_name = 'DETR3DHead'
    detectors = dict(DETR3D='pts_bbox_head')
    reason = (
        "mmdetection3d 1.4's projects/DETR3D DETR3DHead does not build with "
        "mmdet 3.3: it passes transformer=... to mmdet's DETRHead.__init__, "
        'which mmdet 3.x no longer takes (TypeError: unexpected keyword '
        "argument 'transformer'), so its training loss has not been "
        'checked here. Fix: once your DETR3DHead builds and keeps '
        "DETRHead's [L, B, Q, ...] outputs and per-sample targets, register "
        "it with one line: register_query_head('DETR3DHead', detectors="
        "dict(DETR3D='pts_bbox_head')) from "
        'mmdet3d_equity.models.head_adapters.query '
        f'({EXTENDING_DOC}); or use the resampling mode '
        '(EquityWeightedSampler).')
