"""The CPU rotated IoU equals the numba-CUDA kernel (run in numba's CUDA
simulator in a subprocess, an independent implementation); KittiCPUMetric
provides it only while it evaluates: importing the plugin or evaluating
leaves sys.modules as it was."""
import json
import subprocess
import sys

import numpy as np
import pytest

from mmdet3d_equity.evaluation import rotate_iou_cpu_eval

SIM_SCRIPT = r'''
import json, sys, numpy as np
from mmdet3d.evaluation.functional.kitti_utils.rotate_iou import (
    rotate_iou_gpu_eval)
data = json.loads(sys.stdin.read())
b = np.array(data["boxes"], dtype=np.float32)
q = np.array(data["qboxes"], dtype=np.float32)
print(json.dumps({str(c): rotate_iou_gpu_eval(b, q, c).tolist()
                  for c in (-1, 0, 1, 2)}))
'''


def _random_boxes(rng, n):
    xy = rng.uniform(-3, 3, size=(n, 2))
    wh = rng.uniform(0.5, 4, size=(n, 2))
    ang = rng.uniform(-np.pi, np.pi, size=(n, 1))
    return np.concatenate([xy, wh, ang], 1).astype(np.float32)


@pytest.mark.slow
def test_matches_numba_cuda_kernel_in_simulator():
    rng = np.random.default_rng(0)
    boxes, qboxes = _random_boxes(rng, 5), _random_boxes(rng, 4)
    # a pair with large overlap and a disjoint pair
    qboxes[0] = boxes[0] + np.array([0.1, -0.1, 0.0, 0.1, 0.1], np.float32)
    qboxes[1] = boxes[1] + np.array([50, 0, 0, 0, 0], np.float32)
    env = dict(__import__('os').environ, NUMBA_ENABLE_CUDASIM='1')
    out = subprocess.run(
        [sys.executable, '-c', SIM_SCRIPT], env=env, capture_output=True,
        text=True, check=True,
        input=json.dumps(dict(boxes=boxes.tolist(), qboxes=qboxes.tolist())))
    ref = json.loads(out.stdout.strip().splitlines()[-1])
    for crit in (-1, 0, 1, 2):
        ours = rotate_iou_cpu_eval(boxes, qboxes, crit)
        assert ours.shape == (5, 4)
        np.testing.assert_allclose(
            ours, np.array(ref[str(crit)]), rtol=2e-4, atol=2e-5,
            err_msg=f'criterion {crit}')
    assert rotate_iou_cpu_eval(boxes, qboxes)[0, 0] > 0.5
    assert rotate_iou_cpu_eval(boxes, qboxes)[1, 1] == 0


def test_asymmetric_box_rotation_convention():
    # a long thin box rotated by +30 deg vs a copy rotated by -30 deg: the
    # sign convention matters only when the boxes differ in rotation.
    b = np.array([[0, 0, 4, 1, np.pi / 6]], np.float32)
    q = np.array([[1, -0.3, 4, 1, np.pi / 6]], np.float32)
    iou_same = rotate_iou_cpu_eval(b, q)[0, 0]
    # rotating corners by -angle (clockwise): the box axis points to
    # (cos a, -sin a); the query offset (1, -0.3) lies off that axis
    axis = np.array([np.cos(np.pi / 6), -np.sin(np.pi / 6)])
    off = np.array([1.0, -0.3])
    along = off @ axis
    across = abs(off @ np.array([-axis[1], axis[0]]))
    inter = (4 - abs(along)) * (1 - across)
    assert iou_same == pytest.approx(inter / (8 - inter), rel=1e-4)


def test_empty_inputs():
    z = np.zeros((0, 5), np.float32)
    assert rotate_iou_cpu_eval(z, np.ones((3, 5), np.float32)).shape == (0, 3)


def test_pruned_pairs_equal_the_full_mmcv_computation():
    """Only pairs whose circumscribed circles meet are computed; the result
    is bit-identical to mmcv's kernel on every pair."""
    import torch
    from mmcv.ops import box_iou_rotated
    rng = np.random.default_rng(3)
    for _ in range(10):
        b, q = _random_boxes(rng, 40), _random_boxes(rng, 30)
        b[:, :2] *= 12  # spread over +-36 m: most pairs far apart
        q[:, :2] *= 12
        q[:10] = b[:10] + rng.normal(0, 0.2, (10, 5)).astype(np.float32)
        q[10] = b[10]  # identical box
        bt, qt = torch.from_numpy(b.copy()), torch.from_numpy(q.copy())
        bt[:, 4], qt[:, 4] = -bt[:, 4], -qt[:, 4]
        full = box_iou_rotated(bt, qt, aligned=False, clockwise=True)
        ours = rotate_iou_cpu_eval(b, q)
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, full.numpy())
        assert 0 < (ours > 0).sum() < ours.size / 4


PROBE = r'''
import json, sys
name = "mmdet3d.evaluation.functional.kitti_utils.rotate_iou"
before = {k: id(v) for k, v in sys.modules.items()}
import mmdet3d_equity
from mmdet3d_equity.evaluation import KittiCPUMetric, numba_cuda_available
import mmdet3d.evaluation.functional.kitti_utils as ku
state = dict(cuda=numba_cuda_available(),
             after_import=name in sys.modules,
             attr_after_import=hasattr(ku, "rotate_iou"),
             changed=[k for k, v in before.items()
                      if k in sys.modules and id(sys.modules[k]) != v])
if len(sys.argv) > 1:  # evaluate the tiny val split, perfect predictions
    sys.path.insert(0, sys.argv[2])
    from _slice_helpers import KITTI_CLASSES, build_val_dataset, gt_predictions
    ds = build_val_dataset("kitti", sys.argv[1] + "/")
    m = KittiCPUMetric(ann_file=sys.argv[1] + "/kitti_infos_val.pkl")
    m.dataset_meta = dict(classes=KITTI_CLASSES)
    res = m.compute_metrics(gt_predictions(ds, "perfect"))
    state["car"] = res["pred_instances_3d/KITTI/Car_3D_AP40_moderate_strict"]
    state["after_eval"] = name in sys.modules
    state["attr_after_eval"] = hasattr(ku, "rotate_iou")
print("STATE " + json.dumps(state))
'''


def _probe(*args):
    import os.path as osp
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    env = dict(__import__('os').environ, PYTHONPATH=repo)
    out = subprocess.run([sys.executable, '-c', PROBE, *args], env=env,
                         capture_output=True, text=True, cwd=repo)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [x for x in out.stdout.splitlines() if x.startswith('STATE ')]
    return json.loads(line[-1][len('STATE '):])


@pytest.mark.slow
def test_importing_the_plugin_swaps_no_module():
    state = _probe()
    assert state['changed'] == []
    if not state['cuda']:
        assert not state['after_import']
        assert not state['attr_after_import']


@pytest.mark.slow
def test_cpu_metric_evaluates_and_leaves_sys_modules_as_it_was(
        tiny_kitti_root):
    import os.path as osp
    state = _probe(tiny_kitti_root,
                   osp.dirname(osp.dirname(osp.abspath(__file__))))
    assert state['car'] == 100.0  # a perfect detector, > 40 moderate Cars
    if not state['cuda']:
        assert not state['after_eval'] and not state['attr_after_eval']


def test_scope_provides_the_cpu_kernel_and_restores_on_error():
    from mmdet3d.evaluation.functional.kitti_utils.eval import d3_box_overlap

    from mmdet3d_equity.evaluation import cpu_rotate_iou
    from mmdet3d_equity.evaluation.kitti_cpu_iou import ROTATE_IOU_MODULE
    before = sys.modules.get(ROTATE_IOU_MODULE)
    with cpu_rotate_iou(force=True) as used:
        assert used
        from mmdet3d.evaluation.functional.kitti_utils.rotate_iou import (
            rotate_iou_gpu_eval,
        )
        assert rotate_iou_gpu_eval is rotate_iou_cpu_eval
        # camera boxes (x, y, z, l, h, w, ry), axis-aligned: l along x,
        # w along z; shifted by 0.1 m in x and 0.05 m in z
        box = np.array([[1.0, 1.5, 10.0, 3.9, 1.56, 1.6, 0.0]])
        other = box + np.array([[0.1, 0, 0.05, 0, 0, 0, 0]])
        inter = 3.8 * 1.55 * 1.56
        assert d3_box_overlap(box, other)[0, 0] == pytest.approx(
            inter / (2 * 3.9 * 1.6 * 1.56 - inter), abs=1e-4)
    assert sys.modules.get(ROTATE_IOU_MODULE) is before
    with pytest.raises(RuntimeError, match='inside'):
        with cpu_rotate_iou(force=True):
            raise RuntimeError('inside')
    assert sys.modules.get(ROTATE_IOU_MODULE) is before


def _kernel_caches():
    from mmdet3d_equity.evaluation.kitti_cpu_iou import kitti_eval_kernels
    return {k.py_func.__name__: k._cache for k in kitti_eval_kernels()}


def test_cached_kernels_scope_restores_every_kernel(tmp_path, monkeypatch):
    from numba.core.caching import NullCache

    from mmdet3d_equity.evaluation.kitti_cpu_iou import cached_kitti_kernels
    monkeypatch.setenv('NUMBA_CACHE_DIR', str(tmp_path))
    before = _kernel_caches()
    # kitti_eval's five kernels, uncached as mmdet3d defines them
    assert len(before) == 5
    assert all(isinstance(c, NullCache) for c in before.values())
    with cached_kitti_kernels():
        inside = _kernel_caches()
        assert not any(isinstance(c, NullCache) for c in inside.values())
    assert _kernel_caches() == before
    with pytest.raises(RuntimeError, match='inside'):
        with cached_kitti_kernels():
            raise RuntimeError('inside')
    assert _kernel_caches() == before


@pytest.mark.slow
def test_a_new_process_loads_the_kernels_from_the_cache(tiny_kitti_root,
                                                        tmp_path):
    # KittiCPUMetric in two fresh processes sharing one NUMBA_CACHE_DIR:
    # the first compiles (misses, writes the cache), the second loads
    # every kernel from it, and both give the same values
    import os
    import os.path as osp
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    tool = osp.join(repo, 'tools', 'benchmark_kitti_eval.py')
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / 'cache'),
               OMP_NUM_THREADS='1')
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, tool, '--child', 'cached', '--data-root',
             tiny_kitti_root], env=env, capture_output=True, text=True,
            cwd=repo)
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first['cache_hits'] == 0 and first['cache_misses'] > 0
    assert second['cache_hits'] > 0 and second['cache_misses'] == 0
    assert second['values'] == first['values']
    assert first['values']  # 3D AP40 keys were computed
    assert os.listdir(tmp_path / 'cache')
