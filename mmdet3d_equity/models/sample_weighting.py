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

Which outputs are scaled decides which loss terms are weighted. What a
head family outputs, which outputs its config switches off, how its outputs
are nested and which heads are refused (another type, a subclass that may
change the loss, learnable parameters used by the loss outside ``forward``)
is stated by its head adapter
(:mod:`mmdet3d_equity.models.head_adapters`); refusals raise
:class:`UnsupportedHeadError`.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .head_adapters import (HeadAdapter, UnsupportedHeadError,  # noqa: F401
                            adapter_for_head)


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


def resolve_terms(adapter: HeadAdapter, terms: Union[str, Sequence[str]],
                  head: Optional[nn.Module] = None) -> Tuple[str, ...]:
    """Validate ``terms`` ('all' or names from ``adapter.terms``) and, given
    the built ``head``, that it produces the named terms."""
    allowed = tuple(adapter.terms)
    kind = adapter.head_class.__name__
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
        present = adapter.present_terms(head)
        missing = [t for t in terms if t not in present]
        if missing:
            raise ValueError(
                f'GeneralizedFocalLoss.terms {missing} were named explicitly '
                f'but this {kind} does not produce them (its config disables '
                "them); remove them or use terms='all'")
    return terms


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
                 'all', adapter: Optional[HeadAdapter] = None) -> None:
        self.head = head
        self.adapter = adapter_for_head(head) if adapter is None else adapter
        self.adapter.check_weighting(head)
        self.terms = resolve_terms(self.adapter, terms, head)
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
        return self.adapter.scale_outputs(self.head, output, self.terms,
                                          w.to(dtype=torch.float32))
