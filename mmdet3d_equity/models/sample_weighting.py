"""Exact per-sample loss weighting for MMDetection3D heads.

Mechanism
---------
Every head supported here computes its loss from outputs that can be split
by sample -- batch-first maps (dense heads), ``[L, B, Q, ...]`` decoder
outputs (query heads: batch in dim 1), or rows that carry their sample
index (RoIs, voxels, keypoints of two-stage heads) -- with normalisers that
depend on the targets only (``num_pos``, sums of target weights, counts of
a matching on detached predictions, possibly reduced across ranks). The
loss is therefore a sum of per-sample terms ``L = sum_b L_b`` where ``L_b``
depends only on sample ``b``'s part of the outputs. Multiplying the
gradient that flows back into sample ``b``'s part of the selected outputs
by ``w_b`` (:func:`~mmdet3d_equity.models.head_adapters.grad_scale.\
scale_grad_per_sample`, identity in the forward pass) gives exactly the
gradient of ``sum_b w_b * L_b`` w.r.t. every parameter upstream of the
outputs (backbone, neck and head, batch norm included), because the chain
rule only ever sees ``w_b * dL_b/dout_b``. Nothing depends on how the head
flattens batch and levels afterwards, and the head's loss config (e.g. the
type name of ``loss_cls`` that Anchor3DHead uses to decide on sampling) is
never touched.

Which outputs are scaled decides which loss terms are weighted. What a
head family outputs, which outputs its config switches off, how its outputs
are nested, where the rows' samples are read, and which heads are refused
(another type, a subclass that may change the loss, learnable parameters
used by the loss outside ``forward``) is stated by its head adapter
(:mod:`mmdet3d_equity.models.head_adapters`); refusals raise
:class:`UnsupportedHeadError`. :class:`PerSampleGradWeighting` weights one
head; :class:`DetectorWeighting` every head of a detector's loss (an RoI
head with its RPN). This module imports the adapters; they never import
it.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .head_adapters import (  # noqa: F401
    HeadAdapter,
    UnsupportedHeadError,
    adapter_for_head,
    resolve_weighted_heads,
)
from .head_adapters.grad_scale import (  # noqa: F401
    ScaleGradPerSample,
    scale_grad_by_index,
    scale_grad_per_sample,
)


def resolve_terms(adapter: HeadAdapter, terms: Union[str, Sequence[str]],
                  head: Optional[nn.Module] = None) -> Tuple[str, ...]:
    """Validate ``terms`` ('all' or names from ``adapter.terms``) and, given
    the built ``head``, that it produces the named terms."""
    allowed = tuple(adapter.terms)
    kind = adapter.head_name()
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
                 'all', adapter: Optional[HeadAdapter] = None,
                 detector: Optional[nn.Module] = None) -> None:
        self.head = head
        self.detector = detector
        self.adapter = adapter_for_head(head) if adapter is None else adapter
        self.adapter.check_weighting(head)
        self.terms = resolve_terms(self.adapter, terms, head)
        self._handles: List = []
        self._weights: Optional[Tensor] = None
        self.calls = 0

    # -- lifecycle ---------------------------------------------------------
    def install(self) -> None:
        if not self._handles:
            self._handles = list(self.adapter.install_weighting(
                self.head, self, detector=self.detector))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
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

    # -- used by the adapter's hooks -----------------------------------------
    def current_weights(self) -> Optional[Tensor]:
        """The active weights as float32 (None outside ``active``)."""
        w = self._weights
        return None if w is None else w.to(dtype=torch.float32)

    def count_call(self) -> None:
        """Called by the adapter's hook once per head forward."""
        self.calls += 1

    def scale_outputs(self, output, w: Tensor):
        """Apply the adapter's per-sample gradient scaling to ``output``."""
        return self.adapter.scale_outputs(self.head, output, self.terms,
                                          w.to(dtype=torch.float32))


def term_prefix(attr: str) -> str:
    """Prefix of a companion head's term names: ``rpn_head`` -> ``rpn_``."""
    return attr[:-len('head')] if attr.endswith('_head') else attr + '_'


def split_terms(parts: Sequence[Tuple[str, HeadAdapter]],
                terms: Union[str, Sequence[str]]) -> List:
    """Per head of a detector, the terms it weights: ``'all'`` for each, or
    the named terms split by head (a companion's terms carry its attribute's
    prefix, ``rpn_head`` -> ``rpn_cls``; the primary head's are plain).
    Heads with no named term get None (not weighted)."""
    if isinstance(terms, str) or len(parts) == 1:
        return [terms] * len(parts) if len(parts) > 1 else [terms]
    prefixes = [None] + [term_prefix(attr) for attr, _ in parts[1:]]
    allowed = {}
    for i, ((attr, adapter), pre) in enumerate(zip(parts, prefixes)):
        for t in adapter.terms:
            allowed[t if pre is None else pre + t] = (i, t)
    unknown = [t for t in terms if t not in allowed]
    if unknown:
        raise ValueError(
            f'GeneralizedFocalLoss.terms {unknown} are not loss terms of '
            f'this detector; choose from {sorted(allowed)} (or \'all\')')
    out: List = [[] for _ in parts]
    for t in terms:
        i, name = allowed[t]
        out[i].append(name)
    return [o or None for o in out]


class DetectorWeighting:
    """Per-sample weighting of every head whose loss is part of a detector's
    training loss (:func:`resolve_weighted_heads`): one
    :class:`PerSampleGradWeighting` per head, activated together.

    ``terms``: as :class:`GeneralizedFocalLoss.terms` (see
    :func:`split_terms` for two-stage detectors).
    """

    def __init__(self, detector: nn.Module,
                 terms: Union[str, Sequence[str]] = 'all') -> None:
        found = resolve_weighted_heads(detector)
        per_head = split_terms([(a, ad) for a, _, ad in found], terms)
        # (term prefix, weighting) of every weighted head; the primary head
        # (first) has no prefix
        self._prefixed = [
            ('' if i == 0 else term_prefix(attr),
             PerSampleGradWeighting(head, terms=t, adapter=adapter,
                                    detector=detector))
            for i, ((attr, head, adapter), t) in enumerate(zip(found,
                                                               per_head))
            if t is not None
        ]
        self.parts = [part for _, part in self._prefixed]
        self.head = found[0][1]
        self.adapter = found[0][2]

    @property
    def terms(self) -> Tuple[str, ...]:
        """The weighted terms (companion terms with their prefix)."""
        return tuple(pre + t for pre, part in self._prefixed
                     for t in part.terms)

    @property
    def heads(self) -> List[str]:
        return [type(p.head).__name__ for p in self.parts]

    @property
    def _weights(self) -> Optional[Tensor]:
        return self.parts[0]._weights if self.parts else None

    @property
    def calls(self) -> int:
        """Forwards of the head that was called most (1 when exact)."""
        return max(p.calls for p in self.parts) if self.parts else 0

    @property
    def call_counts(self) -> List[int]:
        return [p.calls for p in self.parts]

    def install(self) -> None:
        for p in self.parts:
            p.install()

    def remove(self) -> None:
        for p in self.parts:
            p.remove()

    def activate(self, weights: Tensor) -> None:
        for p in self.parts:
            p.activate(weights)

    def deactivate(self) -> None:
        for p in self.parts:
            p.deactivate()
