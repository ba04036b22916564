"""The one check of point-cloud files, shared by scoring and training.

A KITTI / nuScenes point cloud (``.bin``) is a raw array of float32 records
of ``load_dim`` values. A file is refused before it is read when it is
missing, empty (0 bytes) or truncated (its size is not a whole number of
``4 * load_dim``-byte records); ``.npy`` files are only checked to exist and
be non-empty (their header makes the size check meaningless).
"""
import errno
import os
from typing import Mapping, Optional

from .errors import SampleFileError

FIX = ('Restore the file(s) from the dataset archive, fix load_dim of '
       'LoadPointsFromFile in the config, or drop the sample(s) from the '
       'info file (and recompute the likelihoods).')


def points_load_dim(dataset) -> Optional[int]:
    """``load_dim`` of a built dataset's local ``LoadPointsFromFile`` (None
    when its pipeline reads no local point-cloud file)."""
    for t in getattr(getattr(dataset, 'pipeline', None), 'transforms', []):
        if type(t).__name__ == 'LoadPointsFromFile' and \
                not getattr(t, 'backend_args', None):
            return int(t.load_dim)
    return None


def point_file_problem(path: str, load_dim: int) -> Optional[str]:
    """What is wrong with the point-cloud file ``path``, as a predicate
    ('is empty (0 bytes)', ...); None when nothing is."""
    record = 4 * int(load_dim)
    try:
        size = os.stat(path).st_size
    except OSError as e:
        if e.errno == errno.ENOENT:
            return 'does not exist (check data_root / data_prefix)'
        return f'cannot be read ({e.strerror or e})'
    if size == 0:
        return 'is empty (0 bytes)'
    if not str(path).endswith('.npy') and size % record:
        return (f'is truncated or not a {load_dim}-value float32 point '
                f'file: {size} bytes is not a multiple of the {record}-byte '
                f'point record (load_dim={load_dim})')
    return None


def check_point_file(path: str, load_dim: int, sample_id=None,
                     error=SampleFileError) -> int:
    """Raise ``error`` naming the file (and sample) when it cannot be read
    as a point cloud; return its number of points."""
    problem = point_file_problem(path, load_dim)
    if problem is not None:
        where = '' if sample_id is None else f' (sample {sample_id!r})'
        raise error(f'point cloud {path}{where} {problem}. {FIX}')
    return os.stat(path).st_size // (4 * int(load_dim))


def check_point_files(paths: Mapping[str, str], load_dim: int, where: str,
                      error=SampleFileError) -> None:
    """Raise ``error`` listing every bad file of ``paths`` ({sample id:
    path}) at once; ``where`` says whose samples they are."""
    bad = []
    for ident, path in sorted(paths.items()):
        problem = point_file_problem(path, load_dim)
        if problem is not None:
            bad.append(f'{path} (sample {ident}) {problem}')
    if bad:
        shown = '; '.join(bad[:5]) + ('; ...' if len(bad) > 5 else '')
        raise error(f'{len(bad)} of {len(paths)} point-cloud files {where} '
                    f'cannot be read as point clouds: {shown}. {FIX}')
