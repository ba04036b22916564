"""Adapter of ``FCOSMono3DHead`` (FCOS3D)."""
import torch
from mmdet3d.models.dense_heads import FCOSMono3DHead

from .base import (
    HEAD_ADAPTERS,
    HeadAdapter,
    centres_2d,
    inside_map,
    sample_map,
)


@HEAD_ADAPTERS.register_module()
class FCOSMono3DHeadAdapter(HeadAdapter):
    """``forward`` -> (cls, bbox, dir, attr, centerness), each a list over
    FPN levels of batch-first maps. ``bbox`` feeds ``loss_offset``,
    ``loss_depth``, ``loss_size``, ``loss_rotsin`` and ``loss_velo``; the
    others ``loss_cls``, ``loss_dir``, ``loss_attr``, ``loss_centerness``.

    Object features: the FPN level that FCOS assigns the object to (its
    regress range contains max(l, t, r, b), the distances from the projected
    3D centre to the 2D box edges; below the first range -> level 0),
    sampled at the projected 3D centre ``centers_2d``; cell i sits at pixel
    ``i * stride + stride // 2`` (mmdet3d's prior points)."""

    head_class = FCOSMono3DHead
    detectors = dict(FCOSMono3D='bbox_head')
    terms = ('cls', 'bbox', 'dir', 'attr', 'centerness')
    feature_kind = 'mono_fcos'

    def present_terms(self, head):
        off = self.disabled_terms(head)
        return tuple(t for t in self.terms if t not in off)

    def disabled_terms(self, head) -> set:
        """Terms that the head's config switches off."""
        off = set()
        if not head.use_direction_classifier:
            off.add('dir')
        if not head.pred_attrs:
            off.add('attr')
        return off

    def setup_features(self, model, head, settings):
        return settings

    def describe_features(self, head, settings):
        return (f'{type(head).__name__}: head input level chosen by the '
                f'FCOS regress ranges {list(head.regress_ranges)} (strides '
                f'{list(head.strides)}), {settings.mode} at the projected 3D '
                'centre')

    def object_features(self, head, feats, data_samples, settings):
        strides = list(head.strides)
        ranges = [tuple(map(float, r)) for r in head.regress_ranges]
        if len(feats) != len(strides):
            raise ValueError(f'{type(head).__name__} has {len(strides)} '
                             f'strides but got {len(feats)} input levels')
        out_f, out_l, dropped = [], [], 0
        for b, ds in enumerate(data_samples):
            uv, labels = centres_2d(ds, feats[0].device)
            if 'gt_instances' not in ds or 'bboxes' not in ds.gt_instances:
                raise KeyError(
                    'FCOS3D/PGD object features need the 2D boxes '
                    "(gt_instances.bboxes, LoadAnnotations3D(with_bbox=True)"
                    ") to pick the FPN level by the regress ranges.")
            boxes = ds.gt_instances.bboxes
            boxes = getattr(boxes, 'tensor', boxes).to(uv)
            if boxes.shape[0] != uv.shape[0]:
                raise ValueError(
                    f'{boxes.shape[0]} 2D boxes but {uv.shape[0]} 3D '
                    f'objects in one sample; cannot pair them.')
            dist = torch.stack(
                [uv[:, 0] - boxes[:, 0], uv[:, 1] - boxes[:, 1],
                 boxes[:, 2] - uv[:, 0], boxes[:, 3] - uv[:, 1]],
                1).max(1).values
            lvl = torch.full_like(labels, len(strides) - 1)
            for i in reversed(range(len(ranges))):
                lo, hi = ranges[i]
                lvl[(dist >= lo) & (dist <= hi)] = i
            lvl[dist < ranges[0][0]] = 0
            valid = settings.valid(labels)
            for i, s in enumerate(strides):
                sel = valid & (lvl == i)
                fmap = feats[i][b]
                _, H, W = fmap.shape
                fx = (uv[sel, 0] - s // 2) / s
                fy = (uv[sel, 1] - s // 2) / s
                inside = inside_map(fx, fy, H, W)
                dropped += int((~inside).sum())
                out_f.append(sample_map(fmap, fx[inside], fy[inside],
                                        settings.mode))
                out_l.append(labels[sel][inside])
        return torch.cat(out_f), torch.cat(out_l), dropped
