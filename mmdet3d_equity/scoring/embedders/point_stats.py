"""The point-cloud statistics embedder (``'points'``): appearance of a
LiDAR sample without any model, checkpoint or download.

The vector of a sample is the concatenation of, over its points inside
``point_cloud_range`` (x0, y0, z0, x1, y1, z1):

* the share of its points in each cell of a ``grid`` = (nx, ny) bird's-eye
  grid over [x0, x1) x [y0, y1) (row-major, x first);
* the share in each of ``height_bins`` equal bins of z over [z0, z1);
* the share in each of ``intensity_bins`` equal bins of the 4th value
  (reflectance) over [0, 1] (values outside clipped to it), when the
  points have one;
* log10(1 + number of points in the range).

Shares are 0 for a sample without points in the range. Deterministic, on
the CPU, in the loader workers; the run options that change a model's
numbers (``amp``, ``channels_last``) do not apply and are refused.
"""
from typing import Dict, Sequence

import numpy as np
import torch

from ...utils.errors import EmbeddingError, ScoringError
from ..registry import EMBEDDERS
from .base import BaseEmbedder
from .loaders import LoadFailure

#: KITTI's PointPillars range
DEFAULT_RANGE = (0.0, -39.68, -3.0, 69.12, 39.68, 1.0)


def point_statistics(points: np.ndarray, point_cloud_range: Sequence[float],
                     grid: Sequence[int], height_bins: int,
                     intensity_bins: int) -> np.ndarray:
    """The statistics vector (float32) of one ``(N, dim)`` point cloud (see
    the module docstring)."""
    x0, y0, z0, x1, y1, z1 = (float(v) for v in point_cloud_range)
    nx, ny = (int(v) for v in grid)
    pts = np.asarray(points, np.float64)
    inside = ((pts[:, 0] >= x0) & (pts[:, 0] < x1) & (pts[:, 1] >= y0)
              & (pts[:, 1] < y1) & (pts[:, 2] >= z0) & (pts[:, 2] < z1))
    pts = pts[inside]
    n = len(pts)
    ix = np.minimum(((pts[:, 0] - x0) / (x1 - x0) * nx).astype(int), nx - 1)
    iy = np.minimum(((pts[:, 1] - y0) / (y1 - y0) * ny).astype(int), ny - 1)
    bev = np.bincount(ix * ny + iy, minlength=nx * ny).astype(np.float64)
    iz = np.minimum(((pts[:, 2] - z0) / (z1 - z0) * height_bins).astype(int),
                    height_bins - 1)
    height = np.bincount(iz, minlength=height_bins).astype(np.float64)
    parts = [bev, height]
    if intensity_bins:
        if pts.shape[1] < 4:
            raise ScoringError(
                f'the points embedder was asked for {intensity_bins} '
                f'intensity bins but the points have {pts.shape[1]} values '
                'each; set intensity_bins=0')
        r = np.clip(pts[:, 3], 0.0, 1.0)
        ir = np.minimum((r * intensity_bins).astype(int), intensity_bins - 1)
        parts.append(np.bincount(ir, minlength=intensity_bins).astype(
            np.float64))
    shares = np.concatenate(parts) / max(n, 1)
    return np.concatenate([shares, [np.log10(1.0 + n)]]).astype(np.float32)


class PointStatsDataset(torch.utils.data.Dataset):
    """Item i: the statistics of sample ``rows[i]`` of ``split`` (its point
    file checked and read in a loader worker), or a :class:`LoadFailure`."""

    def __init__(self, split, rows: Sequence[int], params: Dict):
        self.split = split
        self.rows = list(rows)
        self.params = params

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        try:
            pts = self.split.load_points(self.rows[i])
            return point_statistics(pts, **self.params)[None]
        except ScoringError as e:
            return LoadFailure(e)


def collate_statistics(items: Sequence):
    for it in items:
        if isinstance(it, LoadFailure):
            return it
    return torch.from_numpy(np.stack(items))


@EMBEDDERS.register_module('points')
class PointStatsEmbedder(BaseEmbedder):
    """Embed LiDAR samples by point-cloud statistics (module docstring).

    Args:
        point_cloud_range: (x0, y0, z0, x1, y1, z1); default KITTI's.
        grid: (nx, ny) bird's-eye cells.
        height_bins: bins of z.
        intensity_bins: bins of the reflectance (0: none).
        Other run options: :class:`BaseEmbedder`.
    """
    kind = 'point_stats'

    def __init__(self, point_cloud_range: Sequence[float] = DEFAULT_RANGE,
                 grid: Sequence[int] = (8, 8), height_bins: int = 8,
                 intensity_bins: int = 4, **run):
        super().__init__(**run)
        if self.options.amp or self.options.channels_last:
            raise EmbeddingError('the points embedder runs no model: --amp '
                                 'and --channels-last do not apply')
        rng = [float(v) for v in point_cloud_range]
        if len(rng) != 6 or not (rng[0] < rng[3] and rng[1] < rng[4]
                                 and rng[2] < rng[5]):
            raise EmbeddingError(f'point_cloud_range must be (x0, y0, z0, '
                                 f'x1, y1, z1) with x0 < x1, y0 < y1, '
                                 f'z0 < z1, got {point_cloud_range!r}')
        grid = [int(g) for g in grid]
        if len(grid) != 2 or min(grid) < 1 or int(height_bins) < 1 or \
                int(intensity_bins) < 0:
            raise EmbeddingError(
                f'grid must be (nx, ny) >= 1, height_bins >= 1 and '
                f'intensity_bins >= 0, got grid={grid}, height_bins='
                f'{height_bins}, intensity_bins={intensity_bins}')
        self.params = dict(point_cloud_range=rng, grid=grid,
                           height_bins=int(height_bins),
                           intensity_bins=int(intensity_bins))

    def config(self) -> Dict:
        return dict(type=self.kind, pretrained=False,
                    pooling='point_statistics', **self.params)

    def split_dataset(self, split, rows, cameras=None, img_prefix=None):
        return PointStatsDataset(split, rows, self.params)

    collate = staticmethod(collate_statistics)

    def embed_batch(self, batch) -> torch.Tensor:
        self.dim = int(batch.shape[-1])
        return batch
