"""Semantic-scale-balanced (SSB) classification loss.

``SemanticScaleBalancedLoss`` wraps one of mmdet's classification losses and
scales it per class by ``class_weights``. The weights are set by
:class:`~mmdet3d_equity.engine.hooks.SemanticScaleBalanceHook` (dynamic SSB,
which also saves them in and restores them from checkpoints) or by
:meth:`SemanticScaleBalancedLoss.set_class_weights` (static SSB); they are
proportional to 1 / S_i with mean 1 over classes, so the loss scale is kept.
With all weights equal to 1 the wrapped loss is called unchanged, so the
result is bit-identical to the stock loss. ``class_weights`` is a
non-persistent buffer: the model's state dict stays that of plain mmdet3d.

How the weight reaches the loss (documented in docs/semantic_scale.md):

* sigmoid losses (``mmdet.FocalLoss``, ``mmdet.GaussianFocalLoss``,
  ``mmdet.CrossEntropyLoss(use_sigmoid=True)``): the element-wise loss of
  class channel c (dimension 1 of the prediction) is multiplied by w_c, for
  positives and negatives of that channel alike.
* softmax ``mmdet.CrossEntropyLoss``: the loss of a sample with label c is
  multiplied by w_c; background / ignored labels (outside [0, C)) keep 1.

Head integration: the loss is installed on a *built* head
(:class:`HeadSSB`, used by the hook before training), never through the
model config. Stock heads inspect the config dict of ``loss_cls`` --
Anchor3DHead decides ``use_sigmoid`` and, from the type name, whether to use
a sampler -- so the head is built from its stock config exactly as without
SSB, and its built loss is then wrapped. Where the classification loss is and
the class layout come from the head's adapter
(:mod:`mmdet3d_equity.models.head_adapters`). CenterHead calls one loss per
task on task-local heatmap channels; the wrapper maps them to global classes
(tasks in order, classes concatenated, which is how CenterHead numbers its
labels), with a forward pre-hook on the head resetting the task cursor.
"""
import inspect
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmdet3d.registry import MODELS
from torch import nn

from ..head_adapters import adapter_for_head

SUPPORTED_INNER = ('mmdet.FocalLoss', 'mmdet.GaussianFocalLoss',
                   'mmdet.CrossEntropyLoss')


def _inner_kind(module: nn.Module) -> str:
    from mmdet.models.losses import (
        CrossEntropyLoss,
        FocalLoss,
        GaussianFocalLoss,
    )
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


class SemanticScaleBalancedLoss(nn.Module):
    """Per-class semantic-scale-balanced wrapper of a classification loss.

    Built by :class:`HeadSSB` around a head's built classification loss (the
    SemanticScaleBalanceHook does it before training), or directly in
    Python. Not a config type: in a model config it is refused (the hook is
    the one place where SSB is configured).

    Args:
        loss (dict | nn.Module): the wrapped loss, one of
            ``mmdet.FocalLoss``, ``mmdet.GaussianFocalLoss``,
            ``mmdet.CrossEntropyLoss`` (config dict or built module).
        num_classes (int, optional): number of foreground classes; required
            before weights can be set (:class:`HeadSSB` takes it from the
            head's adapter).
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
        # not persistent: checkpoints keep plain mmdet3d state dicts; the
        # SemanticScaleBalanceHook saves and restores the weights itself
        self.register_buffer(
            'class_weights',
            torch.ones(num_classes if num_classes is not None else 0),
            persistent=False)
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
            self.register_buffer(
                'class_weights',
                torch.ones(self.num_classes,
                           device=self.class_weights.device),
                persistent=False)
        elif self.num_classes != n:
            raise ValueError(
                f'SemanticScaleBalancedLoss: num_classes={self.num_classes} '
                f'but {where} has {n} classes; build it with the head\'s '
                f'number of classes (HeadSSB takes it from the head adapter).')

    def set_class_weights(self, weights: Sequence[float]) -> None:
        """Set the per-class weights (finite, > 0, one per class)."""
        if self.num_classes is None:
            raise RuntimeError('SemanticScaleBalancedLoss: num_classes is '
                               'unknown (not installed on a head); give '
                               'num_classes when you build it.')
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
                               'unknown (not installed on a head); give '
                               'num_classes when you build it.')
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
# Installation on a built head
# ---------------------------------------------------------------------------
class HeadSSB:
    """SSB installed on a built head: wraps ``head.<cls_loss>`` (the stock
    loss the head was built with) in a :class:`SemanticScaleBalancedLoss`
    and, for heads that call it once per task (CenterHead), adds a forward
    pre-hook that resets the task cursor. :meth:`remove` restores the head
    exactly.

    Args:
        head: the built dense head.
        adapter: its head adapter (default: looked up from the head).
    """

    def __init__(self, head: nn.Module, adapter=None) -> None:
        self.head = head
        self.adapter = adapter_for_head(head) if adapter is None else adapter
        attr = self.adapter.cls_loss
        inner = getattr(head, attr, None)
        name = type(head).__name__
        if isinstance(inner, SemanticScaleBalancedLoss):
            raise RuntimeError(
                f'{name}.{attr} is already a SemanticScaleBalancedLoss: SSB '
                'is installed once (one SemanticScaleBalanceHook).')
        if not isinstance(inner, nn.Module):
            raise ValueError(
                f'{name} has no classification loss module at .{attr} (got '
                f'{type(inner).__name__}); set cls_loss in its head adapter.')
        self.attr = attr
        self.inner = inner
        self.loss = SemanticScaleBalancedLoss(
            inner, num_classes=self.adapter.num_classes(head))
        ref = next(iter(list(head.parameters()) + list(head.buffers())),
                   None)
        if ref is not None:
            self.loss.to(ref.device)
        setattr(head, attr, self.loss)
        self._handles = []
        tasks = self.adapter.class_tasks(head)
        if tasks is not None:
            self.loss.begin_tasks(tasks)
            loss = self.loss

            def _reset_cursor(module, inputs):
                loss.begin_tasks(tasks)

            self._handles.append(head.register_forward_pre_hook(
                _reset_cursor))

    def remove(self) -> None:
        """Put the stock loss back and remove the task hook."""
        for h in self._handles:
            h.remove()
        self._handles = []
        if getattr(self.head, self.attr, None) is self.loss:
            setattr(self.head, self.attr, self.inner)


def _refuse_in_model_config(*args, **kwargs):
    raise ValueError(
        "SemanticScaleBalancedLoss is not configured in the model: remove "
        "loss_cls=dict(type='SemanticScaleBalancedLoss', ...) from the head "
        '(keep the stock loss_cls) and configure SSB once, on its hook: '
        "custom_hooks = [dict(type='SemanticScaleBalanceHook', "
        'warmup_epochs=5)]. The hook wraps the built loss before training '
        '(docs/semantic_scale.md).')


# The type name stays known to mmdet3d's registry so that an old-style
# config (SSB as a head's loss_cls, which would silently build a different
# head) fails with the fix instead of training without SSB.
MODELS.register_module(name='SemanticScaleBalancedLoss',
                       module=_refuse_in_model_config)
