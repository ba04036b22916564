"""Head adapters: everything the plugin needs to know about a head family.

An adapter is a small class, registered in :data:`HEAD_ADAPTERS` (an
mmengine ``Registry``), that states for one head class

* where the head sits in a detector (:attr:`HeadAdapter.detectors`: the
  detector types whose *whole* training loss is this head's loss, and the
  attribute that holds the head) -- used by the exact per-sample weighting
  of DatasetEquity (:class:`~mmdet3d_equity.engine.hooks.EquityHook`);
* the names of its ``forward`` outputs (:attr:`HeadAdapter.terms`), which of
  them a built head produces, and how to scale their gradient per sample
  (:meth:`HeadAdapter.scale_outputs`);
* the preconditions of exactness (:meth:`HeadAdapter.check_exact`), e.g. no
  loss module with learnable parameters;
* where its classification loss is and its class layout
  (:attr:`HeadAdapter.cls_loss`, :meth:`HeadAdapter.num_classes`,
  :meth:`HeadAdapter.class_tasks`) -- used by semantic-scale-balanced (SSB)
  training;
* how to read the feature of each ground-truth object from the head input
  (:meth:`HeadAdapter.setup_features`, :meth:`HeadAdapter.object_features`)
  -- used by semantic-scale measurement and dynamic SSB.

The adapter of a head is looked up along the head's class hierarchy (the
most specific registered class wins), so an adapter for a subclass overrides
its parent's. A user adds a head family from their own code::

    from mmdet3d_equity.models.head_adapters import HEAD_ADAPTERS, HeadAdapter

    @HEAD_ADAPTERS.register_module()
    class MyHeadAdapter(HeadAdapter):
        head_class = MyHead
        detectors = dict(MyDetector='bbox_head')
        terms = ('cls', 'bbox')
        ...

(docs/extending.md has a worked example.) Nothing here changes a head class:
adapters act on built head instances only.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from mmengine.registry import Registry
from torch import Tensor, nn

from ...utils.errors import UnsupportedHeadError  # noqa: F401
from .grad_scale import scale_grad_per_sample

HEAD_ADAPTERS = Registry('head adapter', scope='mmdet3d_equity')

# Detector attributes of heads whose losses the per-sample weighting of one
# dense head would not cover.
OTHER_LOSS_HEADS = ('img_rpn_head', 'img_roi_head', 'img_bbox_head',
                    'pts_roi_head', 'roi_head', 'rpn_head')
# Where the semantic-scale tools look for a dense head when the detector type
# is not named by an adapter (any detector with one of these attributes).
DEFAULT_HEAD_ATTRS = ('pts_bbox_head', 'bbox_head')
SAMPLING_MODES = ('bilinear', 'nearest')
EXTENDING_DOC = 'docs/extending.md'


# ---------------------------------------------------------------------------
# Object-feature settings and geometry helpers (for adapter authors)
# ---------------------------------------------------------------------------
@dataclass
class FeatureSettings:
    """How object features are read (set by ``ObjectFeatureSampler``).

    Attributes:
        num_classes (int): foreground classes; other labels are dropped.
        mode (str): ``'bilinear'`` or ``'nearest'`` (see :func:`sample_map`).
        level (int): input level for heads that read one level.
        point_cloud_range (list, optional): BEV extent; resolved by
            :meth:`HeadAdapter.setup_features` of BEV heads.
    """
    num_classes: int
    mode: str = 'bilinear'
    level: int = 0
    point_cloud_range: Optional[List[float]] = None

    def valid(self, labels: Tensor) -> Tensor:
        """Mask of labels in [0, num_classes)."""
        return (labels >= 0) & (labels < self.num_classes)


def sample_map(feat: Tensor, fx: Tensor, fy: Tensor,
               mode: str = 'bilinear') -> Tensor:
    """Sample a ``(C, H, W)`` map at continuous cell coordinates.

    ``fx``, ``fy``: ``(K,)`` positions in cell units, cell centres at integer
    values (cell (i, j) is row ``fy = i``, column ``fx = j``). Returns
    ``(K, C)``. ``'bilinear'``: ``grid_sample`` with border padding;
    ``'nearest'``: the cell that contains the point.
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


def inside_map(fx: Tensor, fy: Tensor, H: int, W: int) -> Tensor:
    """Points whose nearest cell lies on an ``H x W`` map."""
    return (fx >= -0.5) & (fx < W - 0.5) & (fy >= -0.5) & (fy < H - 0.5)


def centres_2d(data_sample, device) -> Tuple[Tensor, Tensor]:
    """Projected 3D centres ``(K, 2)`` and labels of a monocular sample."""
    gt = data_sample.gt_instances_3d
    if 'centers_2d' not in gt:
        raise KeyError(
            'monocular object features need gt_instances_3d.centers_2d:'
            ' load them with LoadAnnotations3D(with_bbox_depth=True) and '
            "pack 'centers_2d' in Pack3DDetInputs keys.")
    return (gt.centers_2d.to(device, torch.float32),
            gt.labels_3d.to(device).long())


def model_point_cloud_range(model) -> Optional[List[float]]:
    """``data_preprocessor.voxel_layer.point_cloud_range`` of a detector."""
    dp = getattr(model, 'data_preprocessor', None)
    vl = getattr(dp, 'voxel_layer', None)
    pcr = getattr(vl, 'point_cloud_range', None)
    return [float(v) for v in pcr] if pcr is not None else None


def as_level_list(feats) -> List[Tensor]:
    """A head input (one map or a sequence of level maps) as a list."""
    if isinstance(feats, Tensor):
        return [feats]
    return list(feats)


# ---------------------------------------------------------------------------
# The adapter base class
# ---------------------------------------------------------------------------
class HeadAdapter:
    """What the plugin needs from one head family (see module docstring).

    Subclasses set the class attributes and override the methods whose
    default does not fit. Adapters are stateless; the plugin instantiates
    them without arguments.
    """

    #: the head class this adapter describes
    head_class: Optional[type] = None
    #: for heads outside the installed wheels (mmdetection3d's projects/,
    #: user repositories): the class name, matched along the head's MRO when
    #: the plugin meets a built head, so that registering the adapter never
    #: imports the head's code; set either this or ``head_class``
    head_class_name: Optional[str] = None
    #: detector attributes of further heads whose losses are part of the
    #: detectors' training loss and that are weighted by their own adapters
    #: (two-stage detectors: ``('rpn_head', )``); their terms are named
    #: with the attribute's prefix (``rpn_cls``)
    companions: Tuple[str, ...] = ()
    #: detector type name -> attribute holding this head, for detectors whose
    #: whole training loss is this head's loss (exact per-sample weighting)
    detectors: Dict[str, str] = {}
    #: names of the head's ``forward`` outputs, in order
    terms: Tuple[str, ...] = ()
    #: whether per-sample weighting accepts subclasses of ``head_class``
    #: (subclasses may change the loss; by default they need their own
    #: adapter)
    weight_subclasses: bool = False
    #: attribute of the head holding its classification loss module
    cls_loss: str = 'loss_cls'
    #: short name of the object-feature rule (shown by the tools)
    feature_kind: str = 'custom'

    def __repr__(self) -> str:
        return f'{type(self).__name__}(head_class={self.head_name()})'

    @classmethod
    def head_name(cls) -> Optional[str]:
        """Name of the described head class."""
        if cls.head_class is not None:
            return cls.head_class.__name__
        return cls.head_class_name

    @classmethod
    def describes(cls, klass: type) -> bool:
        """Whether this adapter describes exactly ``klass`` (by identity, or
        by name for a :attr:`head_class_name` adapter)."""
        if cls.head_class is not None:
            return klass is cls.head_class
        return (cls.head_class_name is not None
                and klass.__name__ == cls.head_class_name)

    def check_ssb(self, head: nn.Module) -> None:
        """Refuse ``head`` for SSB if its classification loss is not the
        module at :attr:`cls_loss` (default: accept)."""

    def install_weighting(self, head: nn.Module, weighting,
                          detector: Optional[nn.Module] = None) -> List:
        """Install the torch hooks of per-sample weighting on ``head`` (and,
        where the rows' samples are read there, on parts of ``detector``)
        and return their handles. Default: one forward hook on the head that
        counts the call and scales the outputs (:meth:`scale_outputs`).
        ``weighting`` provides ``current_weights()`` (None when inactive),
        ``count_call()`` and ``terms``."""

        def hook(module, args, output):
            w = weighting.current_weights()
            if w is None:
                return None
            weighting.count_call()
            if not torch.is_grad_enabled():
                return None
            return self.scale_outputs(head, output, weighting.terms, w)

        return [head.register_forward_hook(hook)]

    # -- per-sample weighting (DatasetEquity) -------------------------------
    def check_weighting(self, head: nn.Module) -> None:
        """Refuse ``head`` if its per-sample weighting cannot be exact."""
        if not self.weight_subclasses and not self.describes(type(head)):
            raise UnsupportedHeadError(
                f'DatasetEquity per-sample weighting does not support '
                f'{type(head).__module__}.{type(head).__name__}, a subclass '
                f'of {self.head_name()}: subclasses are refused '
                'because they may couple samples in their loss. Register an '
                'adapter '
                f'for it ({EXTENDING_DOC}) or train with the resampling mode '
                '(EquityWeightedSampler).')
        self.check_exact(head)

    def check_exact(self, head: nn.Module) -> None:
        """Exactness preconditions. Default: no loss module of the head has
        learnable parameters (they would enter the loss outside the head
        outputs and get unweighted gradients)."""
        name = type(head).__name__
        for child, module in head.named_children():
            if child.startswith('loss') and any(
                    p.requires_grad for p in module.parameters()):
                raise UnsupportedHeadError(
                    f'{name}.{child} has learnable parameters; they enter the '
                    'loss outside the head outputs, so per-sample weighting '
                    'would not be exact for them. Use a loss without '
                    'parameters or the resampling mode '
                    '(EquityWeightedSampler).')

    def present_terms(self, head: nn.Module) -> Tuple[str, ...]:
        """The terms this built head produces (its config may disable some).
        Default: all of :attr:`terms`."""
        return tuple(self.terms)

    def scale_outputs(self, head: nn.Module, output, terms: Sequence[str],
                      w: Tensor):
        """Return ``output`` with the gradient of sample b's slice of every
        output in ``terms`` scaled by ``w[b]`` (forward values unchanged).

        Default: ``forward`` returns one entry per name in :attr:`terms`,
        each a list over levels of batch-first tensors (or None).
        """
        names = self.terms
        name = type(head).__name__
        if not isinstance(output, (tuple, list)) or len(output) != len(names):
            got = len(output) if isinstance(output, (tuple, list)) else \
                type(output).__name__
            raise RuntimeError(
                f'{name}.forward returned {got} outputs, expected '
                f'{len(names)} ({names}); the mmdet3d version may have '
                'changed the head and the weighting would not be exact')
        new_out: List = []
        for term, per_level in zip(names, output):
            if term in terms and per_level is not None:
                per_level = [
                    None if t is None else scale_grad_per_sample(t, w)
                    for t in per_level
                ]
            new_out.append(per_level)
        return tuple(new_out)

    # -- semantic-scale-balanced loss -----------------------------------------
    def num_classes(self, head: nn.Module) -> int:
        """Foreground classes of the classification loss (global numbering).
        Default: ``head.num_classes``."""
        return int(head.num_classes)

    def class_tasks(self, head: nn.Module) -> Optional[List[int]]:
        """Classes per loss call, in call order, for heads that call their
        classification loss once per task on task-local channels within one
        forward (CenterHead); None when one call covers all classes."""
        return None

    # -- object features (semantic scale) -----------------------------------
    def setup_features(self, model: nn.Module, head: nn.Module,
                       settings: FeatureSettings) -> FeatureSettings:
        """Validate and complete ``settings`` for this head (once)."""
        raise UnsupportedHeadError(
            f'{type(self).__name__} does not define object features for '
            f'{type(head).__name__}; implement setup_features/object_features '
            f'({EXTENDING_DOC}).')

    def describe_features(self, head: nn.Module,
                          settings: FeatureSettings) -> str:
        return f'{type(head).__name__}: {self.feature_kind} features'

    def features_use_output(self, head: nn.Module) -> bool:
        """Whether object features need the head's outputs as well (then
        :meth:`object_features_from_output` is called from a forward hook
        instead of :meth:`object_features` from a forward pre-hook)."""
        return False

    def object_features_from_output(self, head: nn.Module, inputs: tuple,
                                    output, data_samples,
                                    settings: FeatureSettings
                                    ) -> Tuple[Tensor, Tensor, int]:
        """As :meth:`object_features`, from the head's forward ``inputs``
        (all positional arguments) and its ``output``."""
        raise NotImplementedError

    def object_features(self, head: nn.Module, feats: List[Tensor],
                        data_samples, settings: FeatureSettings
                        ) -> Tuple[Tensor, Tensor, int]:
        """Features ``(K, C)`` and labels ``(K,)`` of the ground-truth
        objects of a batch from the head input ``feats`` (list of
        ``(B, C, H, W)`` levels), and the number of objects dropped because
        they fall outside the map."""
        raise NotImplementedError


class RefusedHeadAdapter(HeadAdapter):
    """A head family the plugin knows and refuses, with the reason and the
    fix (:attr:`reason`): weighting, SSB and object features all raise."""

    reason: str = ''

    def refuse(self, what: str):
        raise UnsupportedHeadError(
            f'{what} does not support {self.head_name()}: {self.reason}')

    def check_weighting(self, head):
        self.refuse('DatasetEquity per-sample weighting')

    def check_ssb(self, head):
        self.refuse('Semantic-scale-balanced training')

    def setup_features(self, model, head, settings):
        self.refuse('Semantic-scale object features')


class BEVHeadAdapter(HeadAdapter):
    """LiDAR BEV heads: the head input (level ``settings.level``) sampled at
    the BEV position (x, y) of the ground-truth box centre. The map spans the
    model's ``point_cloud_range`` with H along y and W along x, as
    PointPillarsScatter / SparseEncoder lay it out."""

    feature_kind = 'bev'

    def setup_features(self, model, head, settings):
        pcr = settings.point_cloud_range
        if pcr is None:
            pcr = model_point_cloud_range(model)
        if pcr is None or len(pcr) != 6:
            raise ValueError(
                'BEV object features need the point cloud range: the model '
                'has no data_preprocessor.voxel_layer.point_cloud_range; '
                'pass point_cloud_range=[x0, y0, z0, x1, y1, z1].')
        settings.point_cloud_range = [float(v) for v in pcr]
        return settings

    def describe_features(self, head, settings):
        return (f'{type(head).__name__}: head input level {settings.level} '
                f'(BEV, spanning point_cloud_range '
                f'{settings.point_cloud_range}), {settings.mode} at the GT '
                'box centre (x, y)')

    def object_features(self, head, feats, data_samples, settings):
        level = settings.level
        if not -len(feats) <= level < len(feats):
            raise ValueError(f'level={level} but the head gets {len(feats)} '
                             'input level(s)')
        fmap = feats[level]
        B, C, H, W = fmap.shape
        x0, y0, _, x1, y1, _ = settings.point_cloud_range
        cx, cy = (x1 - x0) / W, (y1 - y0) / H
        out_f, out_l, dropped = [], [], 0
        for b, ds in enumerate(data_samples):
            gt = ds.gt_instances_3d
            labels = gt.labels_3d.to(fmap.device).long()
            xy = gt.bboxes_3d.tensor[:, :2].to(fmap.device, torch.float32)
            px = (xy[:, 0] - x0) / cx
            py = (xy[:, 1] - y0) / cy
            inside = (px >= 0) & (px < W) & (py >= 0) & (py < H)
            keep = inside & settings.valid(labels)
            dropped += int((~inside).sum())
            out_f.append(sample_map(fmap[b], px[keep] - 0.5, py[keep] - 0.5,
                                    settings.mode))
            out_l.append(labels[keep])
        return torch.cat(out_f), torch.cat(out_l), dropped


# ---------------------------------------------------------------------------
# Lookup
# ---------------------------------------------------------------------------
def registered_adapters() -> List[Type[HeadAdapter]]:
    """The registered adapter classes."""
    return [cls for cls in HEAD_ADAPTERS.module_dict.values()
            if isinstance(cls, type) and issubclass(cls, HeadAdapter)]


def supported_heads() -> List[str]:
    return sorted(cls.head_name() for cls in registered_adapters()
                  if cls.head_name() is not None
                  and not issubclass(cls, RefusedHeadAdapter))


def adapter_for_head(head: nn.Module) -> HeadAdapter:
    """The adapter of the most specific registered class of ``head`` (by
    class, or by class name for adapters of heads outside the wheels)."""
    adapters = registered_adapters()
    for cls in type(head).__mro__:
        found = [a for a in adapters if a.describes(cls)]
        if len(found) > 1:
            raise UnsupportedHeadError(
                f'{len(found)} head adapters are registered for '
                f'{cls.__name__}: {sorted(a.__name__ for a in found)}; keep '
                'one (register yours with force=True under the same name to '
                'replace a shipped adapter).')
        if found:
            return found[0]()
    raise UnsupportedHeadError(
        f'mmdet3d-equity does not support the head '
        f'{type(head).__module__}.{type(head).__name__}: no head adapter is '
        f'registered for it or a parent class. Supported heads: '
        f'{supported_heads()}. Register an adapter for your head '
        f'({EXTENDING_DOC}), or train DatasetEquity with the resampling mode '
        '(EquityWeightedSampler).')


def find_head(model: nn.Module) -> nn.Module:
    """The dense head of a detector for the semantic-scale features and SSB:
    the first of ``pts_bbox_head``, ``bbox_head`` (and the attributes named
    by the registered adapters) that is set."""
    attrs = list(DEFAULT_HEAD_ATTRS)
    for cls in registered_adapters():
        attrs += [a for a in cls.detectors.values() if a not in attrs]
    for attr in attrs:
        head = getattr(model, attr, None)
        if head is not None:
            return head
    raise UnsupportedHeadError(
        f'{type(model).__name__} has no dense head attribute (looked for '
        f'{", ".join(attrs)}); semantic-scale features and SSB need a '
        f'detector with one of the supported heads: {supported_heads()}.')


def resolve_dense_head(detector: nn.Module
                       ) -> Tuple[nn.Module, HeadAdapter]:
    """The primary head of exact per-sample weighting and its adapter: the
    head whose loss (together with its adapter's :attr:`companions`) is the
    detector's whole training loss."""
    return resolve_weighted_heads(detector)[0][1:]


def resolve_weighted_heads(detector: nn.Module
                           ) -> List[Tuple[str, nn.Module, HeadAdapter]]:
    """Every head whose loss is part of the detector's training loss, as
    ``(attribute, head, adapter)``: the primary head first, then its
    adapter's companions (two-stage detectors: the RPN)."""
    name = type(detector).__name__
    adapters = registered_adapters()
    attrs = sorted({a.detectors[name] for a in adapters
                    if name in a.detectors})
    if not attrs:
        known = sorted({d for a in adapters for d in a.detectors})
        raise UnsupportedHeadError(
            f'EquityHook: detector {name} is not supported for exact '
            'per-sample weighting: no head adapter names it as a detector '
            'whose training loss is exactly one dense head\'s loss. Known '
            f'detectors: {known}. Register an adapter that names it '
            f'({EXTENDING_DOC}), or use the resampling mode '
            '(EquityWeightedSampler).')
    heads = [(a, getattr(detector, a, None)) for a in attrs]
    heads = [(a, h) for a, h in heads if h is not None]
    if len(heads) != 1:
        raise UnsupportedHeadError(
            f'EquityHook: {name} must have exactly one dense head among '
            f'{attrs}, found {[a for a, _ in heads] or "none"}')
    attr, head = heads[0]
    adapter = adapter_for_head(head)
    if adapter.detectors.get(name) != attr:
        raise UnsupportedHeadError(
            f'EquityHook: {name}.{attr} is a {type(head).__name__}, whose '
            f'adapter {type(adapter).__name__} does not name detector {name} '
            f'(it names {sorted(adapter.detectors)}); add it to the '
            f'adapter\'s detectors if {name}\'s training loss is exactly '
            f'that head\'s loss ({EXTENDING_DOC}).')
    covered = (attr, ) + tuple(adapter.companions)
    for other in OTHER_LOSS_HEADS:
        if other not in covered and getattr(detector, other,
                                            None) is not None:
            raise UnsupportedHeadError(
                f'EquityHook: {name} has a {other}, whose losses the '
                'per-sample weighting does not cover; exact weighting needs '
                f'a detector whose only loss is its {" + ".join(covered)}.')
    found = [(attr, head, adapter)]
    for other in adapter.companions:
        companion = getattr(detector, other, None)
        if companion is None:
            raise UnsupportedHeadError(
                f'EquityHook: {name} has no {other}, which '
                f'{type(adapter).__name__} weights together with its {attr}'
                '; per-sample weighting supports this detector only in its '
                'stock two-stage form.')
        found.append((other, companion, adapter_for_head(companion)))
    return found


def check_square_stride(sx: float, sy: float, what: str) -> None:
    """Refuse a map whose cells are not square (``what`` names the head)."""
    if not math.isclose(sx, sy, rel_tol=1e-3):
        raise ValueError(f'{what} map strides differ in x ({sx}) and y '
                         f'({sy})')
