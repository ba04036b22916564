"""Object features for detection: the detector feature at each GT object.

Which feature is read for a head is stated by the head's adapter
(:mod:`mmdet3d_equity.models.head_adapters`; table in
docs/semantic_scale.md):

* LiDAR BEV heads -- ``Anchor3DHead`` and subclasses (PointPillars, SECOND,
  ...) and ``CenterHead`` (CenterPoint): the head *input* (the neck output
  that the head consumes; for CenterHead the input of its ``shared_conv``),
  level ``level`` (default 0), sampled at the BEV position (x, y) of the
  ground-truth box centre, the map spanning the model's
  ``point_cloud_range``.
* Monocular FCOS-style heads -- ``FCOSMono3DHead`` (FCOS3D) and ``PGDHead``:
  the head input level that FCOS assigns the object to, sampled at the
  projected 3D centre ``centers_2d``.
* ``SMOKEMono3DHead``: its single input map, sampled at ``centers_2d``.
* ``TransFusionHead`` (BEVFusion): its BEV input at the GT box centre.
* DETR-style query heads with the decoder states as input (mmdet's
  ``DETRHead`` family): the last decoder layer's embedding of the query
  that the head's own targets match to the object (read in a forward hook,
  with the outputs).

Sampling: ``'bilinear'`` (default; ``grid_sample``, border padding, cell
centres at integer positions) or ``'nearest'`` (the cell that contains the
point). Objects whose centre falls outside the map are dropped (and
counted); labels outside [0, num_classes) are dropped.
"""
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmdet3d_equity.models.head_adapters import (  # noqa: F401
    FeatureSettings,
    UnsupportedHeadError,
    adapter_for_head,
    sample_map,  # re-exported
)
from mmdet3d_equity.models.head_adapters import find_head as _find_head
from mmdet3d_equity.models.head_adapters.base import (
    SAMPLING_MODES,
    as_level_list,
    supported_heads,
)

from ..utils.errors import UnsupportedDetectorError  # noqa: F401


class HeadCall(NamedTuple):
    """A head forward seen by :class:`HeadInputCapture` for heads whose
    object features need the outputs too (query heads: the matched
    queries): all positional inputs and the output."""
    inputs: tuple
    output: Any


def find_head(model):
    """The dense head of a detector (``pts_bbox_head`` or ``bbox_head``, or
    an attribute a registered head adapter names)."""
    try:
        return _find_head(model)
    except UnsupportedHeadError as e:
        raise UnsupportedDetectorError(str(e)) from None


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
        try:
            self.adapter = adapter_for_head(self.head)
        except UnsupportedHeadError:
            raise UnsupportedDetectorError(
                f'semantic-scale object features do not support the head '
                f'{type(self.head).__name__}; supported heads: '
                f'{", ".join(supported_heads())} (and their subclasses). '
                'Register a head adapter for it (docs/extending.md).'
            ) from None
        self.settings = self.adapter.setup_features(
            model, self.head,
            FeatureSettings(
                num_classes=int(num_classes), mode=mode, level=int(level),
                point_cloud_range=None if point_cloud_range is None else
                [float(v) for v in point_cloud_range]))
        self.l2_normalize = bool(l2_normalize)
        self.num_dropped = 0

    @property
    def kind(self) -> str:
        """The adapter's feature rule ('bev', 'bev_transfusion', 'query',
        'mono_fcos', 'mono_smoke', or a user adapter's)."""
        return self.adapter.feature_kind

    @property
    def num_classes(self) -> int:
        return self.settings.num_classes

    @property
    def mode(self) -> str:
        return self.settings.mode

    @property
    def pcr(self):
        return self.settings.point_cloud_range

    def describe(self) -> str:
        return self.adapter.describe_features(self.head, self.settings)

    def __call__(self, feats, data_samples) -> Tuple[Tensor, Tensor]:
        """``feats``: the head input (tuple/list of (B, C, H, W) maps), or a
        :class:`HeadCall` (inputs and output) for heads whose adapter reads
        the outputs too (:class:`HeadInputCapture` gives the right one)."""
        if isinstance(feats, HeadCall):
            f, lab, dropped = self.adapter.object_features_from_output(
                self.head, feats.inputs, feats.output, data_samples,
                self.settings)
        else:
            f, lab, dropped = self.adapter.object_features(
                self.head, as_level_list(feats), data_samples,
                self.settings)
        self.num_dropped += int(dropped)
        f = f.detach().float()
        if self.l2_normalize and f.numel():
            f = F.normalize(f, dim=1)
        return f, lab


class HeadInputCapture:
    """Forward hooks that hand the head input + GT data samples to a callback
    during the model's normal forward (no second forward pass).

    A forward pre-hook on the detector records ``data_samples`` when it is
    called with ``mode`` in ``modes``; a forward pre-hook on the head then
    calls ``callback(head_input, data_samples)`` once. For heads whose
    adapter reads the outputs too (``features_use_output``: query heads) a
    forward hook calls ``callback(HeadCall(inputs, output), data_samples)``
    instead. :meth:`remove` removes both hooks.
    """

    def __init__(self, model, head, callback, modes=('loss', ),
                 training_only: bool = True) -> None:
        self.callback = callback
        self.modes = tuple(modes)
        self.training_only = training_only
        self._pending = None
        try:
            use_output = adapter_for_head(head).features_use_output(head)
        except UnsupportedHeadError:
            use_output = False
        self._handles = [
            model.register_forward_pre_hook(self._model_hook,
                                            with_kwargs=True),
            head.register_forward_hook(self._head_output_hook) if use_output
            else head.register_forward_pre_hook(self._head_hook)
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

    def _head_output_hook(self, module, inputs, output):
        if self._pending is None:
            return
        samples, self._pending = self._pending, None
        with torch.no_grad():
            self.callback(HeadCall(tuple(inputs), output), samples)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._pending = None
