"""Adapter of ``TransFusionHead`` (BEVFusion; mmdetection3d projects/).

Registered by class name: the head lives in mmdetection3d's
``projects/BEVFusion`` (not in the pip wheel) and is never imported here.
"""
import torch

from .base import (
    HEAD_ADAPTERS,
    BEVHeadAdapter,
    UnsupportedHeadError,
    sample_map,
)
from .grad_scale import scale_grad_per_sample

# forward output key -> loss term (loss_by_feat of mmdetection3d 1.4)
OUTPUT_TERMS = dict(dense_heatmap='heatmap', heatmap='cls', center='bbox',
                    height='bbox', dim='bbox', rot='bbox', vel='bbox')
# outputs that carry no gradient (built from the detached dense heatmap)
NO_GRAD_OUTPUTS = ('query_heatmap_score', )


@HEAD_ADAPTERS.register_module()
class TransFusionHeadAdapter(BEVHeadAdapter):
    """``forward(feats, metas)`` -> a tuple over input levels (one) of a
    list of one dict of batch-first tensors: ``dense_heatmap`` ``[B, C, X,
    Y]`` feeds ``loss_heatmap`` (normalised by the batch's count of heatmap
    peaks), ``heatmap`` ``[B, C, P * L]`` (decoder layers concatenated on
    the last axis) ``loss_cls`` of every layer, ``center``, ``height``,
    ``dim``, ``rot``, ``vel`` the channels of ``loss_bbox`` (both normalised
    by max(num_pos, 1) of the batch's per-sample Hungarian matching on
    detached predictions). The query initialisation reads
    ``dense_heatmap.detach()``, so the top-k selection carries no gradient
    and ``query_heatmap_score`` is not a loss input. The normalisers are
    counts of the targets, per rank (no cross-GPU reduction upstream).
    (mmdet3d 1.4's ``get_targets`` indexes the prediction list by decoder
    layer, so the head trains with ``num_decoder_layers=1`` only, as in the
    stock configs; the adapter does not depend on the layer count.)

    Object features: the head input (the fused BEV map, input of
    ``shared_conv``) at the GT box centre. The map is laid out as the
    head's heatmap targets are: dimension -2 along x, -1 along y
    (``draw_heatmap_gaussian(..., center_int[[1, 0]])`` upstream), cell
    size ``voxel_size * out_size_factor`` from ``point_cloud_range`` of the
    head's ``train_cfg``. The SSB loss is the query classification
    ``loss_cls`` (all decoder layers)."""

    head_class_name = 'TransFusionHead'
    detectors = dict(BEVFusion='bbox_head')
    terms = ('heatmap', 'cls', 'bbox')
    feature_kind = 'bev_transfusion'

    def scale_outputs(self, head, output, terms, w):
        if not isinstance(output, (tuple, list)) or len(output) != 1:
            raise RuntimeError(
                'TransFusionHead.forward returned '
                f'{type(output).__name__} of length '
                f'{len(output) if hasattr(output, "__len__") else "-"}; '
                'expected a 1-tuple (one input level) of a list of dicts')
        levels = []
        for per_layer in output[0]:
            ret = dict(per_layer)
            for key, value in per_layer.items():
                if key in OUTPUT_TERMS:
                    if OUTPUT_TERMS[key] in terms:
                        ret[key] = scale_grad_per_sample(value, w)
                elif key in NO_GRAD_OUTPUTS:
                    if torch.is_tensor(value) and value.requires_grad:
                        raise UnsupportedHeadError(
                            f'TransFusionHead output {key!r} requires grad; '
                            'upstream it is built from the detached heatmap. '
                            'The head has changed and the weighting would '
                            'not be exact.')
                else:
                    raise UnsupportedHeadError(
                        f'TransFusionHead output {key!r} is not a loss input '
                        'of mmdet3d 1.4 (known: '
                        f'{sorted(OUTPUT_TERMS) + list(NO_GRAD_OUTPUTS)}); '
                        'per-sample weighting cannot tell whether it is '
                        'exact. Remove it from common_heads.')
            levels.append(ret)
        return type(output)([levels])

    def num_classes(self, head):
        return int(head.num_classes) - (0 if head.use_sigmoid_cls else 1)

    # -- object features -----------------------------------------------------
    def _grid(self, head, settings):
        cfg = head.train_cfg or {}
        missing = [k for k in ('point_cloud_range', 'voxel_size',
                               'out_size_factor') if k not in cfg]
        if missing:
            raise ValueError(
                f'TransFusionHead object features need train_cfg '
                f'{missing} (the heatmap-target grid); the head was built '
                'without them.')
        pcr = settings.point_cloud_range or cfg['point_cloud_range']
        osf = float(cfg['out_size_factor'])
        return (float(pcr[0]), float(pcr[1]),
                float(cfg['voxel_size'][0]) * osf,
                float(cfg['voxel_size'][1]) * osf)

    def setup_features(self, model, head, settings):
        self._grid(head, settings)
        if settings.point_cloud_range is None:
            settings.point_cloud_range = [
                float(v) for v in head.train_cfg['point_cloud_range']]
        return settings

    def describe_features(self, head, settings):
        x0, y0, sx, sy = self._grid(head, settings)
        return (f'TransFusionHead: head input level {settings.level} (BEV, '
                f'rows along x, columns along y, cells {sx} x {sy} m from '
                f'({x0}, {y0})), {settings.mode} at the GT box centre')

    def object_features(self, head, feats, data_samples, settings):
        level = settings.level
        if not -len(feats) <= level < len(feats):
            raise ValueError(f'level={level} but the head gets {len(feats)} '
                             'input level(s)')
        fmap = feats[level]
        B, C, X, Y = fmap.shape
        x0, y0, sx, sy = self._grid(head, settings)
        out_f, out_l, dropped = [], [], 0
        for b, ds in enumerate(data_samples):
            gt = ds.gt_instances_3d
            labels = gt.labels_3d.to(fmap.device).long()
            xy = gt.bboxes_3d.tensor[:, :2].to(fmap.device, torch.float32)
            px = (xy[:, 0] - x0) / sx  # continuous cell coordinate along x
            py = (xy[:, 1] - y0) / sy
            inside = (px >= 0) & (px < X) & (py >= 0) & (py < Y)
            keep = inside & settings.valid(labels)
            dropped += int((~inside).sum())
            # rows are x, columns y: sample_map's (fx=column, fy=row)
            out_f.append(sample_map(fmap[b], py[keep] - 0.5,
                                    px[keep] - 0.5, settings.mode))
            out_l.append(labels[keep])
        return torch.cat(out_f), torch.cat(out_l), dropped
