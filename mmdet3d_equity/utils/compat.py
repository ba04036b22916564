"""The compatibility fixes for the pinned stack (torch 2.13, mmengine
0.10.7, mmdet3d 1.4, numpy 1.26), all in one place. Applied once, on import
of the plugin; each says which release makes it unnecessary. Nothing else in
the plugin changes a class or module of mmdet3d, mmdet or mmengine (KITTI
evaluation without CUDA is the registered ``KittiCPUMetric`` a config names,
tests/test_package/test_no_patching.py).

* ``np.long``: mmdet3d 1.4's ``DataBaseSampler`` (the ObjectSample GT-paste
  augmentation of every stock KITTI/nuScenes LiDAR config) builds its labels
  with ``dtype=np.long``, an alias numpy removed in 1.24 and re-added in 2.0
  as the C ``long`` (int64 on Linux). Under numpy 1.24-1.26 the stock
  pipelines crash; we define the alias as numpy 2 does, only when missing.

* Checkpoint loading: torch >= 2.6 defaults ``torch.load(weights_only=True)``,
  which rejects MMEngine 0.10.7's own training checkpoints (its MessageHub
  state pickles ``HistoryBuffer`` objects and their bound methods, which no
  allowlist can admit without admitting ``getattr``). MMEngine 0.10.7 was
  written for the old default, so ``load_from``/``--resume`` fail. We
  re-register MMEngine's local-file checkpoint scheme (through its public
  ``CheckpointLoader.register_scheme``) with the same behaviour MMEngine was
  written for (``weights_only=False``), for local files given to MMEngine
  only; every other ``torch.load`` keeps torch's default. Load only
  checkpoints you trust, as with any MMEngine checkpoint.
"""
import os.path as osp

import numpy as np
import torch

_APPLIED = False


def _torch_defaults_to_weights_only() -> bool:
    major, minor = (int(x) for x in torch.__version__.split('.')[:2])
    return (major, minor) >= (2, 6)


def load_local_checkpoint(filename, map_location=None):
    """MMEngine's local checkpoint loader, with the pre-2.6 torch.load."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def apply_compat() -> None:
    global _APPLIED
    if _APPLIED:
        return
    # Unnecessary from numpy 2.0 (np.long is back), which the pinned stack
    # cannot use yet (mmcv 2.1 / mmdet3d 1.4.0, the newest mmdet3d release,
    # are built for numpy 1.x), or with an mmdet3d release after 1.4.0 whose
    # DataBaseSampler no longer uses np.long.
    if 'long' not in vars(np):  # (hasattr would warn via __getattr__)
        np.long = np.int_  # numpy 2's definition: the C long
    # Unnecessary with torch < 2.6, or with an MMEngine release after 0.10.7
    # (the newest one) whose local checkpoint loader passes weights_only
    # itself.
    if _torch_defaults_to_weights_only():
        from mmengine.runner.checkpoint import CheckpointLoader
        CheckpointLoader.register_scheme(
            prefixes='', loader=load_local_checkpoint, force=True)
    _APPLIED = True
