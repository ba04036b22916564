"""KITTI evaluation without CUDA: a CPU rotated IoU and the metric that
uses it.

mmdet3d 1.4's KITTI evaluation (``kitti_utils.eval``) computes BEV and 3D
overlaps with ``rotate_iou_gpu_eval``, a numba CUDA kernel that it imports
from ``mmdet3d.evaluation.functional.kitti_utils.rotate_iou`` when it needs
it; without CUDA that module cannot even be imported (its kernel is compiled
at import), so the stock ``KittiMetric`` fails on CPU-only machines.

* :func:`rotate_iou_cpu_eval` computes the same quantity with mmcv's
  compiled ``box_iou_rotated`` CPU kernel (float32, as the CUDA kernel).
* :func:`cpu_rotate_iou` is a context manager that, only where numba cannot
  use CUDA, makes that module name resolve to a module providing
  :func:`rotate_iou_cpu_eval` for the duration of the block, and restores
  ``sys.modules`` exactly as it was on leaving it.
* :class:`KittiCPUMetric` (registered in mmdet3d's ``METRICS``) is the stock
  ``KittiMetric`` whose KITTI evaluation runs inside :func:`cpu_rotate_iou`.
  Name it in a config (``val_evaluator = dict(type='KittiCPUMetric', ...)``,
  same arguments and keys as ``KittiMetric``). Where CUDA is available it is
  ``KittiMetric`` unchanged.

Importing the plugin changes nothing: no module is replaced on import.

Conventions reproduced exactly from the CUDA kernel: boxes are
``(x, y, dx, dy, angle)`` BEV boxes in camera coordinates whose corners are
rotated by ``-angle``; entry ``[n, k]`` compares ``query_boxes[k]`` (first
argument of the device function) with ``boxes[n]``; ``criterion`` -1 gives
IoU, 0 intersection / area(query box), 1 intersection / area(box), any other
value the intersection area.
"""
import contextlib
import sys
import types

import numpy as np
import torch
from mmdet3d.evaluation.metrics import KittiMetric
from mmdet3d.registry import METRICS
from mmengine.logging import print_log

#: the module KITTI evaluation imports its rotated IoU from
ROTATE_IOU_MODULE = 'mmdet3d.evaluation.functional.kitti_utils.rotate_iou'
#: the module holding KITTI evaluation's numba-compiled kernels
KITTI_EVAL_MODULE = 'mmdet3d.evaluation.functional.kitti_utils.eval'


def rotate_iou_cpu_eval(boxes, query_boxes, criterion=-1, device_id=0):
    """Drop-in CPU equivalent of ``rotate_iou_gpu_eval`` (same signature).

    KITTI evaluation asks for the overlaps of all boxes of many frames at
    once, most of them far apart: only pairs whose circumscribed circles
    meet are computed (with mmcv's kernel, the same per-pair computation);
    every other pair cannot overlap and is 0.
    """
    from mmcv.ops import box_iou_rotated
    boxes = np.asarray(boxes)
    query_boxes = np.asarray(query_boxes)
    n, k = boxes.shape[0], query_boxes.shape[0]
    out_dtype = boxes.astype(np.float32).dtype
    if n == 0 or k == 0:
        return np.zeros((n, k), dtype=out_dtype)
    b = boxes.astype(np.float32)
    q = query_boxes.astype(np.float32)
    # circumscribed circles (float64, with a margin far above rounding)
    rb = 0.5 * np.hypot(b[:, 2].astype(np.float64), b[:, 3])
    rq = 0.5 * np.hypot(q[:, 2].astype(np.float64), q[:, 3])
    dist = np.hypot(b[:, None, 0].astype(np.float64) - q[None, :, 0],
                    b[:, None, 1].astype(np.float64) - q[None, :, 1])
    ni, ki = np.nonzero(dist <= (rb[:, None] + rq[None, :]) * (1 + 1e-6) +
                        1e-6)
    res = np.zeros((n, k), dtype=np.float64)
    if len(ni):
        bt = torch.from_numpy(b[ni]).clone()
        qt = torch.from_numpy(q[ki]).clone()
        # corners rotated by -angle in the CUDA kernel; mmcv rotates by
        # +angle with clockwise=True, so negate the angle.
        bt[:, 4] = -bt[:, 4]
        qt[:, 4] = -qt[:, 4]
        iou = box_iou_rotated(bt, qt, mode='iou', aligned=True,
                              clockwise=True).numpy().astype(np.float64)
        area_b = (bt[:, 2] * bt[:, 3]).double().numpy()
        area_q = (qt[:, 2] * qt[:, 3]).double().numpy()
        inter = iou * (area_b + area_q) / (1.0 + iou)
        if criterion == -1:
            val = iou
        elif criterion == 0:
            val = inter / area_q
        elif criterion == 1:
            val = inter / area_b
        else:
            val = inter
        res[ni, ki] = val
    return res.astype(out_dtype)


def numba_cuda_available() -> bool:
    """Whether numba can run CUDA kernels here (KittiMetric's requirement)."""
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


_LOGGED = False
_FROZEN = False


@contextlib.contextmanager
def cpu_rotate_iou(force: bool = False):
    """Within the block, KITTI evaluation uses :func:`rotate_iou_cpu_eval`
    when numba has no CUDA (or ``force``); ``sys.modules`` is restored on
    exit, whatever happens inside. Yields whether the CPU kernel is in use.
    """
    global _LOGGED
    if not force and numba_cuda_available():
        yield False
        return
    missing = object()
    previous = sys.modules.get(ROTATE_IOU_MODULE, missing)
    module = types.ModuleType(ROTATE_IOU_MODULE,
                              'CPU rotated IoU (mmdet3d_equity, scoped)')
    module.rotate_iou_gpu_eval = rotate_iou_cpu_eval
    sys.modules[ROTATE_IOU_MODULE] = module
    if not _LOGGED:
        print_log('KittiCPUMetric: numba CUDA is not available; KITTI '
                  'evaluation uses the mmcv box_iou_rotated CPU kernel for '
                  'rotated IoU.', logger='current')
        _LOGGED = True
    try:
        yield True
    finally:
        if sys.modules.get(ROTATE_IOU_MODULE) is module:
            if previous is missing:
                del sys.modules[ROTATE_IOU_MODULE]
            else:
                sys.modules[ROTATE_IOU_MODULE] = previous


@contextlib.contextmanager
def frozen_gc():
    """Within the block, ``gc.collect()`` skips the objects that existed on
    entry (``gc.freeze``). kitti_eval calls ``gc.collect()`` three times per
    evaluation, which costs about a second in a process holding a model and
    a dataset; nothing it allocates is frozen. No-op if something else froze
    objects already."""
    import gc
    global _FROZEN
    if _FROZEN or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    _FROZEN = True
    try:
        yield
    finally:
        _FROZEN = False
        gc.unfreeze()


@contextlib.contextmanager
def single_numba_thread():
    """Run numba's parallel kernels (kitti_eval's 3D overlap) on one thread
    within the block: on a busy CPU each launch of the threaded kernel costs
    ~15 ms, the kernel itself microseconds."""
    import numba
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def kitti_eval_kernels() -> list:
    """The numba-compiled kernels (dispatchers) of mmdet3d's KITTI
    evaluation module (:data:`KITTI_EVAL_MODULE`)."""
    import importlib

    from numba.core.dispatcher import Dispatcher
    module = importlib.import_module(KITTI_EVAL_MODULE)
    return [k for k in vars(module).values() if isinstance(k, Dispatcher)]


@contextlib.contextmanager
def cached_kitti_kernels():
    """Within the block, mmdet3d's numba-compiled KITTI evaluation kernels
    use numba's on-disk cache (what ``@jit(cache=True)`` gives): the first
    evaluation of a process loads them instead of compiling them again:
    0.55 s instead of 9.77 s for the first evaluation of a 64-frame split
    on a 2-core machine (``tools/benchmark_kitti_eval.py``). The cache
    lives where numba puts it (``__pycache__`` beside mmdet3d's source when
    writable, else numba's user cache, or ``NUMBA_CACHE_DIR``) and is keyed
    by the source file and the argument types, so values are those of a
    fresh compilation. A kernel numba cannot cache (no writable location)
    is compiled as before. Each kernel's previous cache setting is restored
    on exit."""
    previous = []
    for kernel in kitti_eval_kernels():
        cache = kernel._cache
        try:
            kernel.enable_caching()
        except RuntimeError:  # no writable cache location
            continue
        previous.append((kernel, cache))
    try:
        yield
    finally:
        for kernel, cache in previous:
            kernel._cache = cache


@METRICS.register_module()
class KittiCPUMetric(KittiMetric):
    """``KittiMetric`` that also runs where numba has no CUDA.

    Same arguments, results and keys as mmdet3d's ``KittiMetric``; its KITTI
    evaluation runs inside :func:`cpu_rotate_iou`, so the rotated IoU uses
    mmcv's CPU kernel only while it evaluates and only where CUDA is
    unavailable. (It also runs numba's 3D-overlap kernel on one thread and
    keeps kitti_eval's ``gc.collect()`` calls cheap and loads its compiled
    kernels from numba's cache while it evaluates: see
    :func:`single_numba_thread`, :func:`frozen_gc`,
    :func:`cached_kitti_kernels`; values are unchanged.)
    """

    def kitti_evaluate(self, results_dict, gt_annos, metric=None,
                       classes=None, logger=None):
        with cpu_rotate_iou(), single_numba_thread(), frozen_gc(), \
                cached_kitti_kernels():
            return super().kitti_evaluate(results_dict, gt_annos,
                                          metric=metric, classes=classes,
                                          logger=logger)
