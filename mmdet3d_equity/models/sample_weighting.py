"""Exact per-sample loss weighting for MMDetection3D dense heads.

Mechanism
---------
Every dense head supported here returns batch-first tensors from ``forward``
(one ``(B, C, H, W)`` map per output and level) and computes its losses from
them with normalisers that depend on the targets only (``num_pos``, sums of
target weights, ...). The head loss is therefore a sum of per-sample terms
``L = sum_b L_b`` where ``L_b`` depends only on sample ``b``'s slice of the
outputs. Multiplying the gradient that flows back into sample ``b``'s slice
of the selected outputs by ``w_b`` (:class:`ScaleGradPerSample`, identity in
the forward pass) gives exactly the gradient of ``sum_b w_b * L_b`` w.r.t.
every parameter upstream of the outputs (backbone, neck, head convs, batch
norm included), because the chain rule only ever sees ``w_b * dL_b/dout_b``.
Nothing depends on how the head flattens batch and levels afterwards
(Anchor3DHead batch-major per level, FCOS3D/PGD level-major, CenterHead B
first), and the head's loss config (e.g. the type name of ``loss_cls`` that
Anchor3DHead uses to decide on sampling) is never touched.

Which outputs are scaled decides which loss terms are weighted (see
:data:`HEAD_TERMS`). Heads for which this is not exact (another type, a
subclass that may change the loss, learnable parameters used by the loss
outside ``forward``) are refused with :class:`UnsupportedHeadError`.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn


class UnsupportedHeadError(TypeError):
    """The per-sample weighting cannot be made exact for this head."""


class ScaleGradPerSample(torch.autograd.Function):
    """Identity forward; backward multiplies sample ``b``'s gradient by w[b].

    ``x`` has the batch in dim 0; ``w`` has shape ``(B,)``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(w)
        # a copy, not a view: heads modify outputs in place in their loss
        # (e.g. CenterHead's clip_sigmoid on the heatmap)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (w, ) = ctx.saved_tensors
        shape = (-1, ) + (1, ) * (grad.dim() - 1)
        if grad.dtype in (torch.float16, torch.bfloat16):
            # one rounding only: multiply in float32, cast back
            out = (grad.float() * w.float().view(shape)).to(grad.dtype)
        else:
            out = grad * w.to(grad.dtype).view(shape)
        return out, None


def scale_grad_per_sample(x: Tensor, w: Tensor) -> Tensor:
    """Return ``x`` unchanged whose backward scales sample b's grad by w[b]."""
    if x.dim() == 0 or x.shape[0] != w.numel():
        raise RuntimeError(
            f'per-sample gradient weighting: an output of shape '
            f'{tuple(x.shape)} does not have the batch ({w.numel()} samples) '
            'in dim 0, so the weighting would not be exact')
    return ScaleGradPerSample.apply(x, w.to(device=x.device))


# Output names of each supported head's forward(), in order. The table maps
# them to the loss terms they feed (docs/equity_training.md).
HEAD_TERMS: Dict[str, Tuple[str, ...]] = {
    # forward -> (cls_scores, bbox_preds, dir_cls_preds), each a level list
    'Anchor3DHead': ('cls', 'bbox', 'dir'),
    # forward -> (cls, bbox, dir, attr, centerness), each a level list
    'FCOSMono3DHead': ('cls', 'bbox', 'dir', 'attr', 'centerness'),
    # forward -> (cls, bbox, dir, depth_cls, depth_weight, attr, centerness)
    'PGDHead': ('cls', 'bbox', 'dir', 'depth_cls', 'depth_weight', 'attr',
                'centerness'),
    # forward -> (cls_scores, bbox_preds), single level
    'SMOKEMono3DHead': ('cls', 'bbox'),
    # forward -> per task: [ {reg, height, dim, rot, vel, heatmap, ...} ]
    'CenterHead': ('heatmap', 'reg', 'height', 'dim', 'rot', 'vel', 'iou'),
}

LOSSES_OF_TERM = {
    'Anchor3DHead': dict(cls='loss_cls', bbox='loss_bbox', dir='loss_dir'),
    'FCOSMono3DHead': dict(
        cls='loss_cls',
        bbox='loss_offset, loss_depth, loss_size, loss_rotsin, loss_velo',
        dir='loss_dir', attr='loss_attr', centerness='loss_centerness'),
    'PGDHead': dict(
        cls='loss_cls',
        bbox='loss_offset, loss_depth, loss_size, loss_rotsin, loss_velo, '
        'loss_kpts, loss_bbox2d, loss_consistency',
        dir='loss_dir (+ loss_consistency)', depth_cls='loss_depth (fused)',
        depth_weight='loss_depth (uncertainty)', attr='loss_attr',
        centerness='loss_centerness'),
    'SMOKEMono3DHead': dict(cls='loss_cls', bbox='loss_bbox'),
    'CenterHead': dict(heatmap='task*.loss_heatmap',
                       reg='task*.loss_bbox (x, y offset)',
                       height='task*.loss_bbox (z)',
                       dim='task*.loss_bbox (size)',
                       rot='task*.loss_bbox (sin, cos)',
                       vel='task*.loss_bbox (velocity)',
                       iou='task*.loss_iou'),
}


def _supported_head_classes() -> Dict[str, type]:
    from mmdet3d.models.dense_heads import (Anchor3DHead, CenterHead,
                                            FCOSMono3DHead, PGDHead,
                                            SMOKEMono3DHead)
    return {
        'Anchor3DHead': Anchor3DHead,
        'CenterHead': CenterHead,
        'FCOSMono3DHead': FCOSMono3DHead,
        'PGDHead': PGDHead,
        'SMOKEMono3DHead': SMOKEMono3DHead,
    }


def head_kind(head: nn.Module) -> str:
    """Name of the supported head family of ``head`` or raise."""
    for name, cls in _supported_head_classes().items():
        if type(head) is cls:
            _check_loss_has_no_own_parameters(head, name)
            return name
    raise UnsupportedHeadError(
        f'DatasetEquity per-sample weighting does not support the head '
        f'{type(head).__module__}.{type(head).__name__}: exact per-sample '
        'weighting is implemented for exactly these mmdet3d heads: '
        f'{sorted(_supported_head_classes())} (subclasses are refused because '
        'they may couple samples in their loss). Use one of them, or train '
        'with the resampling mode instead (EquityWeightedSampler, see '
        'docs/equity_training.md).')


def _check_loss_has_no_own_parameters(head: nn.Module, kind: str) -> None:
    # Parameters that the loss uses directly (not through forward outputs)
    # would get unweighted gradients.
    for name, module in head.named_children():
        if name.startswith('loss') and any(
                p.requires_grad for p in module.parameters()):
            raise UnsupportedHeadError(
                f'{kind}.{name} has learnable parameters; they enter the loss '
                'outside the head outputs, so per-sample weighting would not '
                'be exact for them. Use a loss without parameters or the '
                'resampling mode (EquityWeightedSampler).')
    if kind == 'PGDHead' and getattr(head, 'use_depth_classifier', False):
        raise UnsupportedHeadError(
            'PGDHead with use_depth_classifier=True mixes direct and '
            'classified depth inside the loss through its learnable '
            '`fuse_lambda`, which does not pass through the head outputs, so '
            'the per-sample weighting of its gradient cannot be exact. Set '
            'bbox_head.use_depth_classifier=False, or use the resampling mode '
            '(EquityWeightedSampler), or SMOKE / FCOS3D.')


def resolve_terms(kind: str, terms: Union[str, Sequence[str]],
                  head: Optional[nn.Module] = None) -> Tuple[str, ...]:
    """Validate ``terms`` ('all' or names from :data:`HEAD_TERMS`)."""
    allowed = HEAD_TERMS[kind]
    if isinstance(terms, str):
        if terms != 'all':
            raise ValueError(
                f"GeneralizedFocalLoss.terms must be 'all' or a list of term "
                f'names of {kind} from {list(allowed)}, got {terms!r}')
        return allowed
    terms = tuple(terms)
    if not terms:
        raise ValueError('GeneralizedFocalLoss.terms is empty: nothing would '
                         "be weighted; use 'all' or name terms from "
                         f'{list(allowed)}')
    unknown = [t for t in terms if t not in allowed]
    if unknown:
        raise ValueError(
            f'GeneralizedFocalLoss.terms {unknown} are not loss terms of '
            f'{kind}; choose from {list(allowed)} (or \'all\')')
    if len(set(terms)) != len(terms):
        raise ValueError(f'GeneralizedFocalLoss.terms has duplicates: {terms}')
    if head is not None:
        _check_terms_exist(kind, terms, head)
    return terms


def _check_terms_exist(kind: str, terms: Tuple[str, ...],
                       head: nn.Module) -> None:
    missing = []
    if kind == 'CenterHead':
        present = set()
        for task_head in head.task_heads:
            present.update(task_head.heads.keys())
        missing = [t for t in terms if t not in present]
    else:
        flags = dict(
            dir=getattr(head, 'use_direction_classifier', True),
            attr=getattr(head, 'pred_attrs', True),
            depth_cls=getattr(head, 'use_depth_classifier', True),
            depth_weight=getattr(head, 'weight_dim', 1) != -1)
        missing = [t for t in terms if not flags.get(t, True)]
    if missing:
        raise ValueError(
            f'GeneralizedFocalLoss.terms {missing} were named explicitly but '
            f'this {kind} does not produce them (its config disables them); '
            "remove them or use terms='all'")


class PerSampleGradWeighting:
    """Scales the gradient of a head's outputs per sample while active.

    Usage::

        weighting = PerSampleGradWeighting(head, terms='all')
        weighting.install()
        with weighting.active(weights):   # (B,) tensor
            losses = head.loss(feats, batch_data_samples)
        sum(losses.values()).backward()  # == grad of sum_b w_b * L_b
        weighting.remove()

    Outside ``active`` (evaluation, inference, ``mode='tensor'``) the head
    runs unchanged. ``calls`` counts head forwards during the active block,
    so callers can assert that the loss came from exactly one forward.
    """

    def __init__(self, head: nn.Module, terms: Union[str, Sequence[str]] =
                 'all') -> None:
        self.head = head
        self.kind = head_kind(head)
        self.terms = resolve_terms(self.kind, terms, head)
        self._handle = None
        self._weights: Optional[Tensor] = None
        self.calls = 0

    # -- lifecycle ---------------------------------------------------------
    def install(self) -> None:
        if self._handle is None:
            self._handle = self.head.register_forward_hook(self._hook)

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._weights = None

    @property
    def installed(self) -> bool:
        return self._handle is not None

    def activate(self, weights: Tensor) -> None:
        weights = torch.as_tensor(weights).detach().flatten()
        if not torch.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(f'per-sample weights must be finite and >= 0, '
                             f'got {weights.tolist()}')
        self._weights = weights
        self.calls = 0

    def deactivate(self) -> None:
        self._weights = None

    def active(self, weights: Tensor):
        weighting = self

        class _Ctx:

            def __enter__(self_inner):
                weighting.activate(weights)
                return weighting

            def __exit__(self_inner, *exc):
                weighting.deactivate()
                return False

        return _Ctx()

    # -- the hook ----------------------------------------------------------
    def _hook(self, module, args, output):
        w = self._weights
        if w is None:
            return None
        self.calls += 1
        if not torch.is_grad_enabled():
            return None
        return self.scale_outputs(output, w)

    def scale_outputs(self, output, w: Tensor):
        """Apply :func:`scale_grad_per_sample` to the selected outputs."""
        w = w.to(dtype=torch.float32)
        if self.kind == 'CenterHead':
            # tuple over tasks -> list over levels -> dict of maps
            if not isinstance(output, (tuple, list)):
                raise RuntimeError(
                    f'CenterHead.forward returned {type(output).__name__}; '
                    'expected a tuple over tasks')
            new_out = []
            for task_out in output:
                levels = []
                for ret in task_out:
                    ret = dict(ret)
                    for key in list(ret.keys()):
                        if key in self.terms:
                            ret[key] = scale_grad_per_sample(ret[key], w)
                        elif key not in HEAD_TERMS['CenterHead']:
                            raise UnsupportedHeadError(
                                f'CenterHead output {key!r} is not a known '
                                'loss term; per-sample weighting cannot '
                                'tell whether it is exact')
                    levels.append(ret)
                new_out.append(levels)
            return type(output)(new_out) if isinstance(output, tuple) \
                else new_out
        names = HEAD_TERMS[self.kind]
        if not isinstance(output, (tuple, list)) or len(output) != len(names):
            raise RuntimeError(
                f'{self.kind}.forward returned {len(output)} outputs, '
                f'expected {len(names)} ({names}); the mmdet3d version may '
                'have changed the head and the weighting would not be exact')
        new_out: List = []
        for name, per_level in zip(names, output):
            if name in self.terms and per_level is not None:
                per_level = [
                    None if t is None else scale_grad_per_sample(t, w)
                    for t in per_level
                ]
            new_out.append(per_level)
        return tuple(new_out)
