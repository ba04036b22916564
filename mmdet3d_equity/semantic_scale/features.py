"""Object features for detection: the detector feature at each GT object.

Which feature (see docs/semantic_scale.md for the table):

* LiDAR BEV heads -- ``Anchor3DHead`` and subclasses (PointPillars, SECOND,
  ...) and ``CenterHead`` (CenterPoint): the head *input* (the neck output
  that the head consumes; for CenterHead the input of its ``shared_conv``),
  level ``level`` (default 0), sampled at the BEV position (x, y) of the
  ground-truth box centre. The BEV map is taken to span the model's
  ``point_cloud_range`` (from ``data_preprocessor.voxel_layer``) with
  H along y and W along x, as PointPillarsScatter / SparseEncoder lay it out.
* Monocular FCOS-style heads -- ``FCOSMono3DHead`` (FCOS3D) and ``PGDHead``:
  the head input level that FCOS assigns the object to (its regress range
  contains max(l, t, r, b), the distances from the projected 3D centre to the
  edges of the 2D box), sampled at the projected 3D centre ``centers_2d``;
  feature cell i sits at pixel ``i * stride + stride // 2`` (mmdet3d's prior
  points).
* ``SMOKEMono3DHead``: its single input map, stride = padded image width /
  map width, sampled at ``centers_2d``; cell i covers pixels
  [i * stride, (i + 1) * stride).

Sampling: ``'bilinear'`` (default; ``grid_sample``, border padding, cell
centres at integer positions) or ``'nearest'`` (the cell that contains the
point). Objects whose centre falls outside the map are dropped (and
counted); labels outside [0, num_classes) are dropped.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

SAMPLING_MODES = ('bilinear', 'nearest')
SUPPORTED_HEADS = ('Anchor3DHead (and subclasses)', 'CenterHead',
                   'FCOSMono3DHead', 'PGDHead', 'SMOKEMono3DHead')


class UnsupportedDetectorError(TypeError):
    """The detector has no head the semantic-scale features support."""


def sample_map(feat: Tensor, fx: Tensor, fy: Tensor,
               mode: str = 'bilinear') -> Tensor:
    """Sample a ``(C, H, W)`` map at continuous cell coordinates.

    ``fx``, ``fy``: ``(K,)`` positions in cell units, cell centres at integer
    values (cell (i, j) is row ``fy = i``, column ``fx = j``). Returns
    ``(K, C)``.
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f'sampling mode must be one of {SAMPLING_MODES}, '
                         f'got {mode!r}')
    C, H, W = feat.shape
    if fx.numel() == 0:
        return feat.new_zeros((0, C))
    if mode == 'nearest':
        ix = torch.floor(fx + 0.5).long().clamp(0, W - 1)
        iy = torch.floor(fy + 0.5).long().clamp(0, H - 1)
        return feat[:, iy, ix].T
    gx = (2 * fx + 1) / W - 1
    gy = (2 * fy + 1) / H - 1
    grid = torch.stack([gx, gy], -1).view(1, 1, -1, 2).to(feat.dtype)
    out = F.grid_sample(feat[None], grid, mode='bilinear',
                        padding_mode='border', align_corners=False)
    return out[0, :, 0, :].T


def find_head(model):
    """The dense head of a detector (``bbox_head`` or ``pts_bbox_head``)."""
    head = getattr(model, 'pts_bbox_head', None)
    if head is None:
        head = getattr(model, 'bbox_head', None)
    if head is None:
        raise UnsupportedDetectorError(
            f'{type(model).__name__} has neither bbox_head nor pts_bbox_head;'
            f' semantic-scale features support detectors with one of: '
            f'{", ".join(SUPPORTED_HEADS)}.')
    return head


def head_kind(head) -> str:
    from mmdet3d.models.dense_heads import (Anchor3DHead, CenterHead,
                                            FCOSMono3DHead, SMOKEMono3DHead)
    if isinstance(head, (Anchor3DHead, CenterHead)):
        return 'bev'
    if isinstance(head, FCOSMono3DHead):  # PGDHead is a subclass
        return 'mono_fcos'
    if isinstance(head, SMOKEMono3DHead):
        return 'mono_smoke'
    raise UnsupportedDetectorError(
        f'semantic-scale object features do not support the head '
        f'{type(head).__name__}; supported heads: '
        f'{", ".join(SUPPORTED_HEADS)}. Add a feature rule in '
        f'mmdet3d_equity/semantic_scale/features.py for other heads.')


def _model_pcr(model) -> Optional[List[float]]:
    dp = getattr(model, 'data_preprocessor', None)
    vl = getattr(dp, 'voxel_layer', None)
    pcr = getattr(vl, 'point_cloud_range', None)
    return [float(v) for v in pcr] if pcr is not None else None


class ObjectFeatureSampler:
    """Turns a head input + data samples into per-object (features, labels).

    Args:
        model: the detector (unwrapped).
        num_classes (int): foreground classes; other labels are dropped.
        mode (str): 'bilinear' or 'nearest'.
        level (int): BEV heads: which input level (default 0).
        point_cloud_range (list, optional): BEV extent [x0, y0, z0, x1, y1,
            z1]; default: the model's ``data_preprocessor.voxel_layer``.
        l2_normalize (bool): L2-normalise each object feature.
    """

    def __init__(self, model, num_classes: int, mode: str = 'bilinear',
                 level: int = 0,
                 point_cloud_range: Optional[Sequence[float]] = None,
                 l2_normalize: bool = False) -> None:
        if mode not in SAMPLING_MODES:
            raise ValueError(f'sampling must be one of {SAMPLING_MODES}, '
                             f'got {mode!r}')
        self.head = find_head(model)
        self.kind = head_kind(self.head)
        self.num_classes = int(num_classes)
        self.mode = mode
        self.level = int(level)
        self.l2_normalize = bool(l2_normalize)
        self.num_dropped = 0
        self.pcr = None
        if self.kind == 'bev':
            pcr = point_cloud_range if point_cloud_range is not None \
                else _model_pcr(model)
            if pcr is None or len(pcr) != 6:
                raise ValueError(
                    'BEV object features need the point cloud range: the '
                    'model has no data_preprocessor.voxel_layer.'
                    'point_cloud_range; pass point_cloud_range=[x0, y0, z0, '
                    'x1, y1, z1].')
            self.pcr = [float(v) for v in pcr]

    def describe(self) -> str:
        h = type(self.head).__name__
        if self.kind == 'bev':
            return (f'{h}: head input level {self.level} (BEV, spanning '
                    f'point_cloud_range {self.pcr}), {self.mode} at the GT '
                    f'box centre (x, y)')
        if self.kind == 'mono_fcos':
            return (f'{h}: head input level chosen by the FCOS regress '
                    f'ranges {list(self.head.regress_ranges)} (strides '
                    f'{list(self.head.strides)}), {self.mode} at the '
                    f'projected 3D centre')
        return (f'{h}: head input (stride = padded width / map width), '
                f'{self.mode} at the projected 3D centre')

    # ------------------------------------------------------------------
    def __call__(self, feats, data_samples) -> Tuple[Tensor, Tensor]:
        """``feats``: the head input (tuple/list of (B, C, H, W) maps)."""
        if isinstance(feats, Tensor):
            feats = [feats]
        feats = list(feats)
        if self.kind == 'bev':
            out = self._bev(feats, data_samples)
        elif self.kind == 'mono_fcos':
            out = self._fcos(feats, data_samples)
        else:
            out = self._smoke(feats, data_samples)
        f, lab = out
        f = f.detach().float()
        if self.l2_normalize and f.numel():
            f = F.normalize(f, dim=1)
        return f, lab

    def _valid(self, labels: Tensor) -> Tensor:
        return (labels >= 0) & (labels < self.num_classes)

    def _bev(self, feats, data_samples):
        if not -len(feats) <= self.level < len(feats):
            raise ValueError(f'level={self.level} but the head gets '
                             f'{len(feats)} input level(s)')
        fmap = feats[self.level]
        B, C, H, W = fmap.shape
        x0, y0, _, x1, y1, _ = self.pcr
        cx, cy = (x1 - x0) / W, (y1 - y0) / H
        out_f, out_l = [], []
        for b, ds in enumerate(data_samples):
            gt = ds.gt_instances_3d
            labels = gt.labels_3d.to(fmap.device).long()
            xy = gt.bboxes_3d.tensor[:, :2].to(fmap.device, torch.float32)
            px = (xy[:, 0] - x0) / cx
            py = (xy[:, 1] - y0) / cy
            inside = (px >= 0) & (px < W) & (py >= 0) & (py < H)
            keep = inside & self._valid(labels)
            self.num_dropped += int((~inside).sum())
            out_f.append(sample_map(fmap[b], px[keep] - 0.5, py[keep] - 0.5,
                                    self.mode))
            out_l.append(labels[keep])
        return torch.cat(out_f), torch.cat(out_l)

    def _centres_2d(self, ds, device):
        gt = ds.gt_instances_3d
        if 'centers_2d' not in gt:
            raise KeyError(
                'monocular object features need gt_instances_3d.centers_2d:'
                ' load them with LoadAnnotations3D(with_bbox_depth=True) and '
                "pack 'centers_2d' in Pack3DDetInputs keys.")
        return (gt.centers_2d.to(device, torch.float32),
                gt.labels_3d.to(device).long())

    def _fcos(self, feats, data_samples):
        head = self.head
        strides = list(head.strides)
        ranges = [tuple(map(float, r)) for r in head.regress_ranges]
        if len(feats) != len(strides):
            raise ValueError(f'{type(head).__name__} has {len(strides)} '
                             f'strides but got {len(feats)} input levels')
        out_f, out_l = [], []
        for b, ds in enumerate(data_samples):
            uv, labels = self._centres_2d(ds, feats[0].device)
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
            dist = torch.stack([uv[:, 0] - boxes[:, 0], uv[:, 1] - boxes[:, 1],
                                boxes[:, 2] - uv[:, 0], boxes[:, 3] - uv[:, 1]],
                               1).max(1).values
            lvl = torch.full_like(labels, len(strides) - 1)
            for i in reversed(range(len(ranges))):
                lo, hi = ranges[i]
                lvl[(dist >= lo) & (dist <= hi)] = i
            lvl[dist < ranges[0][0]] = 0
            valid = self._valid(labels)
            for i, s in enumerate(strides):
                sel = valid & (lvl == i)
                fmap = feats[i][b]
                _, H, W = fmap.shape
                fx = (uv[sel, 0] - s // 2) / s
                fy = (uv[sel, 1] - s // 2) / s
                inside = (fx >= -0.5) & (fx < W - 0.5) & (fy >= -0.5) & \
                    (fy < H - 0.5)
                self.num_dropped += int((~inside).sum())
                out_f.append(sample_map(fmap, fx[inside], fy[inside],
                                        self.mode))
                out_l.append(labels[sel][inside])
        return torch.cat(out_f), torch.cat(out_l)

    def _smoke(self, feats, data_samples):
        fmap = feats[0]
        B, C, H, W = fmap.shape
        out_f, out_l = [], []
        for b, ds in enumerate(data_samples):
            pad = ds.metainfo.get('pad_shape', None) or \
                ds.metainfo.get('batch_input_shape', None)
            if pad is None:
                raise KeyError('SMOKE object features need pad_shape or '
                               'batch_input_shape in the sample metainfo')
            sx, sy = pad[1] / W, pad[0] / H
            if not math.isclose(sx, sy, rel_tol=1e-3):
                raise ValueError(f'SMOKE map strides differ in x ({sx}) and '
                                 f'y ({sy})')
            uv, labels = self._centres_2d(ds, fmap.device)
            fx, fy = uv[:, 0] / sx - 0.5, uv[:, 1] / sy - 0.5
            inside = (fx >= -0.5) & (fx < W - 0.5) & (fy >= -0.5) & \
                (fy < H - 0.5)
            keep = inside & self._valid(labels)
            self.num_dropped += int((~inside).sum())
            out_f.append(sample_map(fmap[b], fx[keep], fy[keep], self.mode))
            out_l.append(labels[keep])
        return torch.cat(out_f), torch.cat(out_l)


class HeadInputCapture:
    """Forward hooks that hand the head input + GT data samples to a callback
    during the model's normal forward (no second forward pass).

    A forward pre-hook on the detector records ``data_samples`` when it is
    called with ``mode`` in ``modes``; a forward pre-hook on the head then
    calls ``callback(head_input, data_samples)`` once.
    """

    def __init__(self, model, head, callback, modes=('loss', ),
                 training_only: bool = True) -> None:
        self.callback = callback
        self.modes = tuple(modes)
        self.training_only = training_only
        self._pending = None
        self._handles = [
            model.register_forward_pre_hook(self._model_hook,
                                            with_kwargs=True),
            head.register_forward_pre_hook(self._head_hook)
        ]

    def _model_hook(self, module, args, kwargs):
        mode = kwargs.get('mode', args[2] if len(args) > 2 else 'tensor')
        samples = kwargs.get('data_samples',
                             args[1] if len(args) > 1 else None)
        if mode in self.modes and samples is not None and \
                (module.training or not self.training_only):
            self._pending = samples
        else:
            self._pending = None

    def _head_hook(self, module, inputs):
        if self._pending is None:
            return
        samples, self._pending = self._pending, None
        with torch.no_grad():
            self.callback(inputs[0], samples)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
