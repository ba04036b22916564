"""A CPU replacement for KittiMetric's numba-CUDA rotated IoU.

mmdet3d 1.4's KITTI evaluation (``kitti_utils.eval``) computes BEV and 3D
overlaps with ``rotate_iou_gpu_eval``, a numba CUDA kernel, so KittiMetric
fails on machines without CUDA. :func:`rotate_iou_cpu_eval` computes the same
quantity with mmcv's compiled ``box_iou_rotated`` CPU kernel (float32, as the CUDA
kernel), and
:func:`install_cpu_rotate_iou` puts it in place of the CUDA kernel only when
numba cannot use CUDA. With CUDA available nothing changes.

Conventions reproduced exactly from the CUDA kernel: boxes are
``(x, y, dx, dy, angle)`` BEV boxes in camera coordinates whose corners are
rotated by ``-angle``; entry ``[n, k]`` compares ``query_boxes[k]`` (first
argument of the device function) with ``boxes[n]``; ``criterion`` -1 gives
IoU, 0 intersection / area(query box), 1 intersection / area(box), any other
value the intersection area.
"""
import numpy as np
import torch
from mmengine.logging import print_log

_INSTALLED = False


def rotate_iou_cpu_eval(boxes, query_boxes, criterion=-1, device_id=0):
    """Drop-in CPU equivalent of ``rotate_iou_gpu_eval`` (same signature)."""
    from mmcv.ops import box_iou_rotated
    boxes = np.asarray(boxes)
    query_boxes = np.asarray(query_boxes)
    n, k = boxes.shape[0], query_boxes.shape[0]
    out_dtype = boxes.astype(np.float32).dtype
    if n == 0 or k == 0:
        return np.zeros((n, k), dtype=out_dtype)
    b = torch.from_numpy(boxes.astype(np.float32)).clone()
    q = torch.from_numpy(query_boxes.astype(np.float32)).clone()
    # corners rotated by -angle in the CUDA kernel; mmcv rotates by +angle
    # with clockwise=True, so negate the angle.
    b[:, 4] = -b[:, 4]
    q[:, 4] = -q[:, 4]
    iou = box_iou_rotated(b, q, mode='iou', aligned=False,
                          clockwise=True).numpy().astype(np.float64)
    area_b = (b[:, 2] * b[:, 3]).double().numpy()[:, None]
    area_q = (q[:, 2] * q[:, 3]).double().numpy()[None, :]
    inter = iou * (area_b + area_q) / (1.0 + iou)
    if criterion == -1:
        res = iou
    elif criterion == 0:
        res = inter / area_q
    elif criterion == 1:
        res = inter / area_b
    else:
        res = inter
    return res.astype(out_dtype)


def _numba_cuda_available() -> bool:
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


def install_cpu_rotate_iou(force: bool = False) -> bool:
    """Use :func:`rotate_iou_cpu_eval` in KITTI evaluation when CUDA is
    unavailable to numba (or when ``force``). Returns whether it is in use."""
    global _INSTALLED
    if _INSTALLED:
        return True
    if not force and _numba_cuda_available():
        return False
    # Without CUDA the original module cannot even be imported (its kernel is
    # compiled eagerly at import), so register a module that provides the
    # CPU function under its name; eval.py imports it lazily from there.
    import sys
    import types

    import mmdet3d.evaluation.functional.kitti_utils as kitti_utils
    name = kitti_utils.__name__ + '.rotate_iou'
    module = types.ModuleType(name, 'CPU rotated IoU (mmdet3d_equity)')
    module.rotate_iou_gpu_eval = rotate_iou_cpu_eval
    sys.modules[name] = module
    kitti_utils.rotate_iou = module
    _INSTALLED = True
    print_log(
        'mmdet3d_equity: numba CUDA is not available; KITTI evaluation uses '
        'the mmcv box_iou_rotated CPU kernel for rotated IoU.',
        logger='current')
    return True
