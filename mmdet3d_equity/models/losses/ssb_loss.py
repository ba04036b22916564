"""Semantic-scale-balanced (SSB) classification loss.

``SemanticScaleBalancedLoss`` wraps one of mmdet's classification losses and
scales it per class by ``class_weights`` (a persistent buffer, saved in and
restored from checkpoints). The weights are set by
:class:`~mmdet3d_equity.engine.hooks.SemanticScaleBalanceHook` (dynamic SSB)
or by :meth:`SemanticScaleBalancedLoss.set_class_weights` (static SSB); they
are proportional to 1 / S_i with mean 1 over classes, so the loss scale is
kept. With all weights equal to 1 the wrapped loss is called unchanged, so the
result is bit-identical to the stock loss.

How the weight reaches the loss (documented in docs/semantic_scale.md):

* sigmoid losses (``mmdet.FocalLoss``, ``mmdet.GaussianFocalLoss``,
  ``mmdet.CrossEntropyLoss(use_sigmoid=True)``): the element-wise loss of
  class channel c (dimension 1 of the prediction) is multiplied by w_c, for
  positives and negatives of that channel alike.
* softmax ``mmdet.CrossEntropyLoss``: the loss of a sample with label c is
  multiplied by w_c; background / ignored labels (outside [0, C)) keep 1.

Head integration (the traps): stock heads inspect the *config dict* of
``loss_cls`` -- Anchor3DHead decides ``use_sigmoid`` and, from the type name,
whether to use a sampler (``sampling = type not in ['mmdet.FocalLoss',
'mmdet.GHMC']``). Importing this module therefore wraps the ``__init__`` of
Anchor3DHead (and its subclasses), CenterHead and AnchorFreeMono3DHead
(FCOS3D, PGD, SMOKE): when ``loss_cls`` is an SSB config, the head is built
with the *inner* loss config -- exactly as the stock head -- and the built
inner loss is then wrapped. Nothing changes for other configs. CenterHead
calls one loss per task on task-local heatmap channels; the wrapper maps them
to global classes (tasks in order, classes concatenated, which is how
CenterHead numbers its labels).
"""
import copy
import functools
import inspect
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from mmdet3d.registry import MODELS

SSB_TYPES = ('SemanticScaleBalancedLoss', 'mmdet3d.SemanticScaleBalancedLoss')
SUPPORTED_INNER = ('mmdet.FocalLoss', 'mmdet.GaussianFocalLoss',
                   'mmdet.CrossEntropyLoss')


def _inner_kind(module: nn.Module) -> str:
    from mmdet.models.losses import (CrossEntropyLoss, FocalLoss,
                                     GaussianFocalLoss)
    if isinstance(module, FocalLoss):
        return 'focal'
    if isinstance(module, GaussianFocalLoss):
        return 'gaussian_focal'
    if isinstance(module, CrossEntropyLoss):
        if module.use_mask:
            raise ValueError('SemanticScaleBalancedLoss: CrossEntropyLoss '
                             'with use_mask=True is not a classification '
                             'loss; use use_sigmoid=True or False.')
        return 'ce_sigmoid' if module.use_sigmoid else 'ce_softmax'
    raise ValueError(
        f'SemanticScaleBalancedLoss: unsupported inner loss '
        f'{type(module).__name__}; supported: {", ".join(SUPPORTED_INNER)}')


@MODELS.register_module()
class SemanticScaleBalancedLoss(nn.Module):
    """Per-class semantic-scale-balanced wrapper of a classification loss.

    Args:
        loss (dict | nn.Module): the wrapped loss, one of
            ``mmdet.FocalLoss``, ``mmdet.GaussianFocalLoss``,
            ``mmdet.CrossEntropyLoss`` (config dict or built module).
        num_classes (int, optional): number of foreground classes. Inside a
            supported head it is taken from the head when omitted (and
            checked against the head when given); required otherwise.
    """

    def __init__(self, loss, num_classes: Optional[int] = None) -> None:
        super().__init__()
        if isinstance(loss, nn.Module):
            inner = loss
        elif isinstance(loss, dict):
            ltype = loss.get('type', None)
            if ltype not in SUPPORTED_INNER:
                raise ValueError(
                    f'SemanticScaleBalancedLoss: unknown inner loss type '
                    f'{ltype!r}. Set loss=dict(type=...) to one of '
                    f'{", ".join(SUPPORTED_INNER)}.')
            inner = MODELS.build(loss)
        else:
            raise TypeError('SemanticScaleBalancedLoss: `loss` must be a '
                            'config dict such as dict(type=\'mmdet.FocalLoss\''
                            ', use_sigmoid=True, ...), got '
                            f'{type(loss).__name__}')
        self.kind = _inner_kind(inner)
        if self.kind.startswith('ce') and getattr(inner, 'avg_non_ignore',
                                                  False):
            raise ValueError('SemanticScaleBalancedLoss: CrossEntropyLoss('
                             'avg_non_ignore=True) is not supported; give '
                             'avg_factor from the head instead.')
        self.loss = inner
        if num_classes is not None:
            num_classes = int(num_classes)
            if num_classes < 1:
                raise ValueError(f'SemanticScaleBalancedLoss: num_classes '
                                 f'must be >= 1, got {num_classes}')
        self.num_classes = num_classes
        self.register_buffer(
            'class_weights',
            torch.ones(num_classes if num_classes is not None else 0))
        # CenterHead: one loss call per task on task-local channels
        self._task_sizes: Optional[List[int]] = None
        self._task_cursor = 0

    # -- compatibility with head code that reads attributes of loss_cls ----
    @property
    def use_sigmoid(self) -> bool:
        return getattr(self.loss, 'use_sigmoid', True)

    @property
    def loss_weight(self) -> float:
        return self.loss.loss_weight

    def extra_repr(self) -> str:
        return f'kind={self.kind}, num_classes={self.num_classes}'

    # -- weights -----------------------------------------------------------
    def _ensure_num_classes(self, n: int, where: str) -> None:
        if self.num_classes is None:
            self.num_classes = int(n)
            self.class_weights = torch.ones(
                self.num_classes, device=self.class_weights.device)
        elif self.num_classes != n:
            raise ValueError(
                f'SemanticScaleBalancedLoss: num_classes={self.num_classes} '
                f'but {where} has {n} classes; remove num_classes from the '
                f'loss config or make it match.')

    def set_class_weights(self, weights: Sequence[float]) -> None:
        """Set the per-class weights (finite, > 0, one per class)."""
        if self.num_classes is None:
            raise RuntimeError('SemanticScaleBalancedLoss: num_classes is '
                               'unknown (not attached to a head); give '
                               'num_classes in its config.')
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if w.shape != (self.num_classes, ):
            raise ValueError(f'set_class_weights: expected {self.num_classes}'
                             f' weights, got shape {tuple(w.shape)}')
        if not torch.isfinite(w).all() or (w <= 0).any():
            raise ValueError(f'set_class_weights: weights must be finite and '
                             f'> 0, got {w.tolist()}')
        self.class_weights.copy_(w.to(self.class_weights))

    def reset_class_weights(self) -> None:
        self.class_weights.fill_(1.0)

    def begin_tasks(self, task_sizes: Sequence[int]) -> None:
        """Declare the per-task channel layout (CenterHead)."""
        sizes = [int(s) for s in task_sizes]
        self._ensure_num_classes(sum(sizes), 'the CenterHead (sum of tasks)')
        self._task_sizes = sizes
        self._task_cursor = 0

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + 'class_weights'
        if key in state_dict and self.num_classes is None:
            self._ensure_num_classes(state_dict[key].numel(), 'checkpoint')
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # -- forward -----------------------------------------------------------
    def _current_weights(self) -> torch.Tensor:
        if self._task_sizes is None:
            return self.class_weights
        t = self._task_cursor
        if t >= len(self._task_sizes):
            raise RuntimeError(
                f'SemanticScaleBalancedLoss was called {t + 1} times since '
                f'the last CenterHead forward, but the head has '
                f'{len(self._task_sizes)} tasks. Heads that override '
                f'CenterHead.loss_by_feat are not supported.')
        self._task_cursor += 1
        start = sum(self._task_sizes[:t])
        return self.class_weights[start:start + self._task_sizes[t]]

    def forward(self, *args, **kwargs) -> torch.Tensor:
        if self.num_classes is None:
            raise RuntimeError('SemanticScaleBalancedLoss: num_classes is '
                               'unknown; give num_classes in its config.')
        cw = self._current_weights()
        if bool((cw == 1).all()):
            return self.loss(*args, **kwargs)
        sig = inspect.signature(self.loss.forward)
        bound = sig.bind(*args, **kwargs)
        arg = bound.arguments
        if arg.get('pos_inds', None) is not None:
            raise NotImplementedError(
                'SemanticScaleBalancedLoss: GaussianFocalLoss with pos_inds '
                '(CenterNet-update style) is not supported.')
        reduction = arg.get('reduction_override', None) or \
            self.loss.reduction
        avg_factor = arg.get('avg_factor', None)
        arg['reduction_override'] = 'none'
        if 'avg_factor' in sig.parameters:
            arg['avg_factor'] = None
        elem = self.loss(*bound.args, **bound.kwargs)
        pred = next(iter(arg.values()))
        cw = cw.to(elem.dtype)
        if self.kind == 'ce_softmax':
            label = list(arg.values())[1]
            valid = (label >= 0) & (label < cw.numel())
            sample_w = torch.ones_like(elem)
            sample_w[valid] = cw[label[valid].long()]
            elem = elem * sample_w
        else:
            if elem.dim() < 2 or elem.shape[1] != cw.numel():
                raise ValueError(
                    f'SemanticScaleBalancedLoss: the prediction has '
                    f'{elem.shape[1] if elem.dim() > 1 else 1} class '
                    f'channels in dim 1 but {cw.numel()} class weights '
                    f'apply; check num_classes. Prediction shape '
                    f'{tuple(pred.shape)}.')
            shape = [1] * elem.dim()
            shape[1] = cw.numel()
            elem = elem * cw.view(shape)
        from mmdet.models.losses.utils import weight_reduce_loss
        return weight_reduce_loss(elem, None, reduction, avg_factor)


# ---------------------------------------------------------------------------
# Head integration
# ---------------------------------------------------------------------------
def is_ssb_config(cfg) -> bool:
    return isinstance(cfg, dict) and (
        cfg.get('type', None) in SSB_TYPES
        or cfg.get('type', None) is SemanticScaleBalancedLoss)


def _split_ssb_config(cfg: dict):
    cfg = copy.deepcopy(dict(cfg))
    extra = set(cfg) - {'type', 'loss', 'num_classes'}
    if extra:
        raise ValueError(f'SemanticScaleBalancedLoss: unknown keys '
                         f'{sorted(extra)}; it takes loss=dict(...) and '
                         f'optionally num_classes.')
    if 'loss' not in cfg:
        raise ValueError(
            'SemanticScaleBalancedLoss needs the wrapped loss: '
            "loss_cls=dict(type='SemanticScaleBalancedLoss', "
            "loss=dict(type='mmdet.FocalLoss', use_sigmoid=True, ...))")
    inner = cfg['loss']
    if not isinstance(inner, dict) or inner.get('type') not in \
            SUPPORTED_INNER:
        got = inner.get('type') if isinstance(inner, dict) else inner
        raise ValueError(
            f'SemanticScaleBalancedLoss: unknown inner loss type {got!r}. '
            f'Set loss=dict(type=...) to one of {", ".join(SUPPORTED_INNER)}.')
    return inner, cfg.get('num_classes', None)


def _head_num_classes(head) -> int:
    from mmdet3d.models.dense_heads import Anchor3DHead, CenterHead
    if isinstance(head, CenterHead):
        return sum(head.num_classes)
    if isinstance(head, Anchor3DHead) and not head.use_sigmoid_cls:
        return head.num_classes - 1  # the head added a background class
    return head.num_classes


def _wrap_head_init(cls) -> None:
    if getattr(cls.__init__, '_ssb_wrapped', False):
        return
    orig = cls.__init__
    sig = inspect.signature(orig)

    @functools.wraps(orig)
    def __init__(self, *args, **kwargs):
        bound = sig.bind(self, *args, **kwargs)
        cfg = bound.arguments.get('loss_cls', None)
        if not is_ssb_config(cfg):
            return orig(*bound.args, **bound.kwargs)
        inner_cfg, num_classes = _split_ssb_config(cfg)
        bound.arguments['loss_cls'] = inner_cfg
        orig(*bound.args, **bound.kwargs)
        ssb = SemanticScaleBalancedLoss(self.loss_cls, num_classes)
        ssb._ensure_num_classes(_head_num_classes(self),
                                type(self).__name__)
        self.loss_cls = ssb
        from mmdet3d.models.dense_heads import CenterHead
        if isinstance(self, CenterHead):
            sizes = list(self.num_classes)
            ssb.begin_tasks(sizes)

            def _reset_cursor(module, inputs):
                module.loss_cls.begin_tasks(sizes)

            self.register_forward_pre_hook(_reset_cursor)

    __init__._ssb_wrapped = True
    cls.__init__ = __init__


def install_head_integration() -> None:
    """Wrap the supported heads' ``__init__`` (idempotent)."""
    from mmdet3d.models.dense_heads import (Anchor3DHead,
                                            AnchorFreeMono3DHead, CenterHead)
    for cls in (Anchor3DHead, CenterHead, AnchorFreeMono3DHead):
        _wrap_head_init(cls)


install_head_integration()
