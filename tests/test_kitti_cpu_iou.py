"""The CPU rotated IoU equals the numba-CUDA kernel (run in numba's CUDA
simulator in a subprocess, an independent implementation)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from mmdet3d_equity.evaluation import rotate_iou_cpu_eval

SIM_SCRIPT = r'''
import json, sys, numpy as np
from mmdet3d.evaluation.functional.kitti_utils.rotate_iou import rotate_iou_gpu_eval
data = json.loads(sys.stdin.read())
b = np.array(data["boxes"], dtype=np.float32)
q = np.array(data["qboxes"], dtype=np.float32)
print(json.dumps({str(c): rotate_iou_gpu_eval(b, q, c).tolist() for c in (-1, 0, 1, 2)}))
'''


def _random_boxes(rng, n):
    xy = rng.uniform(-3, 3, size=(n, 2))
    wh = rng.uniform(0.5, 4, size=(n, 2))
    ang = rng.uniform(-np.pi, np.pi, size=(n, 1))
    return np.concatenate([xy, wh, ang], 1).astype(np.float32)


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


def test_installed_on_import_without_cuda():
    from numba import cuda

    import mmdet3d_equity  # noqa: F401
    if cuda.is_available():
        pytest.skip('numba CUDA available: the CUDA kernel stays in place')
    from mmdet3d.evaluation.functional.kitti_utils import rotate_iou
    from mmdet3d.evaluation.functional.kitti_utils.eval import \
        d3_box_overlap
    assert rotate_iou.rotate_iou_gpu_eval is rotate_iou_cpu_eval
    # the evaluation code path runs: identical camera boxes overlap fully
    box = np.array([[1.0, 1.5, 10.0, 3.9, 1.56, 1.6, 0.3]])
    assert d3_box_overlap(box, box)[0, 0] == pytest.approx(1.0, abs=1e-5)
