"""Adapter of ``SMOKEMono3DHead`` (SMOKE)."""
import torch
from mmdet3d.models.dense_heads import SMOKEMono3DHead

from .base import (
    HEAD_ADAPTERS,
    HeadAdapter,
    centres_2d,
    check_square_stride,
    inside_map,
    sample_map,
)


@HEAD_ADAPTERS.register_module()
class SMOKEMono3DHeadAdapter(HeadAdapter):
    """``forward`` -> (cls_scores, bbox_preds), single-level lists, feeding
    ``loss_cls`` and ``loss_bbox``. Object features: the single head input
    map (stride = padded image width / map width; cell i covers pixels
    [i * stride, (i + 1) * stride)) at the projected 3D centre."""

    head_class = SMOKEMono3DHead
    detectors = dict(SMOKEMono3D='bbox_head')
    terms = ('cls', 'bbox')
    feature_kind = 'mono_smoke'

    def setup_features(self, model, head, settings):
        return settings

    def describe_features(self, head, settings):
        return (f'{type(head).__name__}: head input (stride = padded width '
                f'/ map width), {settings.mode} at the projected 3D centre')

    def object_features(self, head, feats, data_samples, settings):
        fmap = feats[0]
        B, C, H, W = fmap.shape
        out_f, out_l, dropped = [], [], 0
        for b, ds in enumerate(data_samples):
            pad = ds.metainfo.get('pad_shape', None) or \
                ds.metainfo.get('batch_input_shape', None)
            if pad is None:
                raise KeyError('SMOKE object features need pad_shape or '
                               'batch_input_shape in the sample metainfo')
            sx, sy = pad[1] / W, pad[0] / H
            check_square_stride(sx, sy, 'SMOKE')
            uv, labels = centres_2d(ds, fmap.device)
            fx, fy = uv[:, 0] / sx - 0.5, uv[:, 1] / sy - 0.5
            inside = inside_map(fx, fy, H, W)
            keep = inside & settings.valid(labels)
            dropped += int((~inside).sum())
            out_f.append(sample_map(fmap[b], fx[keep], fy[keep],
                                    settings.mode))
            out_l.append(labels[keep])
        return torch.cat(out_f), torch.cat(out_l), dropped
