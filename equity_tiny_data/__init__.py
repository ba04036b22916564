"""Synthetic tiny KITTI / nuScenes datasets in the real on-disk layouts.

The generators write raw sensor files and run mmdet3d 1.4's own converters,
so the results load unchanged with ``KittiDataset`` / ``NuScenesDataset`` and
their stock pipelines.  Each frame has an appearance mode ('day', 'dusk' or
the rare 'fog'), recorded in ``<root>/frame_modes.json``.
"""
from ._common import MODES, RARE_MODE, count_modes
from .kitti import create_tiny_kitti
from .nuscenes import create_tiny_nuscenes

__all__ = ['create_tiny_kitti', 'create_tiny_nuscenes', 'MODES', 'RARE_MODE',
           'count_modes']
