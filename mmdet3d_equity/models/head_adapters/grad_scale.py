"""The one autograd primitive of exact per-sample weighting.

:func:`scale_grad_per_sample` returns its input unchanged in the forward
pass; in the backward pass the gradient of sample b's slice is multiplied by
``w[b]``. The batch may sit in any dimension (``dim``: 0 for dense maps,
1 for the ``[L, B, Q, ...]`` outputs of query heads), or the rows may carry
their sample index (:func:`scale_grad_by_index`: RoI rows, voxel rows).
This module imports nothing of the package (head adapters and
``sample_weighting`` import it; nothing imports back).
"""
import torch
from torch import Tensor


class ScaleGradPerSample(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``f`` along
    ``dim`` (``f``: one factor per index of that dimension)."""

    @staticmethod
    def forward(ctx, x: Tensor, f: Tensor,  # type: ignore[override]
                dim: int) -> Tensor:
        ctx.save_for_backward(f)
        ctx.dim = dim
        # a copy, not a view: heads modify outputs in place in their loss
        # (CenterHead's and TransFusionHead's clip_sigmoid)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (f, ) = ctx.saved_tensors
        if bool((f == 1).all()):
            # weights 1: the incoming gradient itself (same values and
            # memory layout), so the step is the stock one bit for bit
            # (a product, even by 1, may change the layout and with it the
            # summation order of a bias gradient downstream)
            return grad, None, None
        shape = [1] * grad.dim()
        shape[ctx.dim] = -1
        if grad.dtype in (torch.float16, torch.bfloat16):
            # one rounding only: multiply in float32, cast back
            out = (grad.float() * f.float().view(shape)).to(grad.dtype)
        else:
            out = grad * f.to(grad.dtype).view(shape)
        return out, None, None


def scale_grad_per_sample(x: Tensor, w: Tensor, dim: int = 0) -> Tensor:
    """Return ``x`` unchanged whose backward scales sample b's gradient by
    ``w[b]``; the batch is dimension ``dim`` of ``x``."""
    if x.dim() <= dim or x.shape[dim] != w.numel():
        raise RuntimeError(
            f'per-sample gradient weighting: an output of shape '
            f'{tuple(x.shape)} does not have the batch ({w.numel()} samples) '
            f'in dim {dim}, so the weighting would not be exact')
    return ScaleGradPerSample.apply(x, w.to(device=x.device).flatten(), dim)


def scale_grad_by_index(x: Tensor, w: Tensor, index: Tensor) -> Tensor:
    """Return ``x`` unchanged whose backward scales the gradient of row i
    (dimension 0) by ``w[index[i]]``: rows that belong to samples through an
    index (RoIs: ``rois[:, 0]``; voxels: ``coors[:, 0]``)."""
    index = index.to(device=x.device).long().flatten()
    if x.dim() == 0 or x.shape[0] != index.numel():
        raise RuntimeError(
            f'per-sample gradient weighting: {tuple(x.shape)} rows but '
            f'{index.numel()} sample indices; the rows cannot be attributed '
            'to samples, so the weighting would not be exact')
    if index.numel() and (int(index.min()) < 0 or
                          int(index.max()) >= w.numel()):
        raise RuntimeError(
            f'per-sample gradient weighting: sample indices in '
            f'[{int(index.min())}, {int(index.max())}] for a batch of '
            f'{w.numel()} samples')
    f = w.to(device=x.device).flatten()[index]
    return ScaleGradPerSample.apply(x, f, 0)
