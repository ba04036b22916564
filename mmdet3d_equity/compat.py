"""Small compatibility fixes for the pinned stack (mmdet3d 1.4 + numpy 1.26).

* ``np.long``: mmdet3d 1.4's ``DataBaseSampler`` (the ObjectSample GT-paste
  augmentation of every stock KITTI/nuScenes LiDAR config) builds its labels
  with ``dtype=np.long``, an alias numpy removed in 1.24 and re-added in 2.0
  as the C ``long`` (int64 on Linux). Under numpy 1.24-1.26 the stock
  pipelines crash; we define the alias as numpy 2 does, only when it is
  missing.
"""
import numpy as np


def apply_compat() -> None:
    if not hasattr(np, 'long'):
        np.long = np.int_  # numpy 2's definition: the C long
