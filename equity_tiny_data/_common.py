"""Shared helpers of the synthetic tiny-dataset generators.

* atomic output directories (build next to the target, then rename),
* frame appearance modes (the planted 'rare mode'),
* access to mmdet3d's own dataset converters shipped in the wheel's
  ``.mim/tools/dataset_converters`` folder (loaded under a private package
  name, so they never clash with this repository's ``tools/`` directory),
* small geometry / drawing helpers used by both generators.
"""
import contextlib
import importlib
import io
import os
import os.path as osp
import shutil
import sys
import tempfile
import types

import numpy as np

from mmdet3d_equity.utils.fileio import (
    OutputError,
    OutputExistsError,
    atomic_write_json,
    check_output_dir,
    new_dir_mode,
)

# --------------------------------------------------------------------------
# Appearance modes
# --------------------------------------------------------------------------
#: All frame appearance modes; 'fog' is the planted rare mode.
MODES = ('day', 'dusk', 'fog')
RARE_MODE = 'fog'
RARE_FRACTION = 0.08
DUSK_FRACTION = 0.22
MIN_FRAMES = 16

#: Per-mode LiDAR behaviour: global keep probability of points, attenuation
#: length (m; points are kept with prob. exp(-range/att)), intensity scale,
#: number of near-range scatter returns (fog droplets) and range noise (m).
LIDAR_STYLE = {
    'day': dict(keep=1.0, att=None, inten=1.0, scatter=0, noise=0.02),
    'dusk': dict(keep=0.9, att=None, inten=0.9, scatter=0, noise=0.025),
    'fog': dict(keep=0.75, att=22.0, inten=0.45, scatter=700, noise=0.05),
}


def count_modes(num):
    """Number of frames of each mode for ``num`` frames (exact control)."""
    n_rare = max(2, int(round(RARE_FRACTION * num)))
    n_dusk = int(round(DUSK_FRACTION * num))
    n_day = num - n_rare - n_dusk
    if n_day < 1:
        raise ValueError(f'too few frames ({num}) to plant the modes; '
                         f'use at least {MIN_FRAMES} frames')
    return {'day': n_day, 'dusk': n_dusk, RARE_MODE: n_rare}


def check_rare_fractions(rare_fraction, val_rare_fraction):
    """Validate the per-split rare-mode shares (both None, or both given)."""
    if (rare_fraction is None) != (val_rare_fraction is None):
        raise ValueError(
            'give both rare_fraction (train split) and val_rare_fraction '
            '(val split), or neither (then the rare mode gets '
            f'{RARE_FRACTION:.0%} of all frames, split proportionally)')
    for name, v in (('rare_fraction', rare_fraction),
                    ('val_rare_fraction', val_rare_fraction)):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                not 0.0 <= float(v) < 1.0:
            raise ValueError(f'{name} must be a number in [0, 1), got '
                             f'{v!r}; e.g. 0.06 (rare in train) and 0.5 '
                             '(enriched in val)')


def check_train_rare_factor(factor, rare_fraction):
    """Validate the positive control's multiplier of train rare frames."""
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) \
            or factor < 1:
        raise ValueError(f'train_rare_factor must be an int >= 1, got '
                         f'{factor!r}; e.g. 4 (the positive control: four '
                         'times as many rare frames in train)')
    if factor != 1 and rare_fraction is None:
        raise ValueError('train_rare_factor needs rare_fraction and '
                         'val_rare_fraction (the per-split shares it '
                         'multiplies in the train split only)')
    return int(factor)


def assign_modes(train_ids, val_ids, rng, rare_fraction=None,
                 val_rare_fraction=None, train_rare_factor=1):
    """Assign a mode to every sample id.

    Without per-split shares, the rare mode gets exactly
    ``count_modes(N)[RARE_MODE]`` frames, at least one (and proportionally
    most) of them in the train split, and 'dusk' ``DUSK_FRACTION`` of all.

    With ``rare_fraction`` and ``val_rare_fraction`` (the efficacy study's
    design: rare in train, enriched in val so that its AP can be measured),
    each split gets ``round(share * frames)`` rare frames (at least one when
    the share is > 0); of the others ``round(DUSK_FRACTION * frames)`` are
    'dusk' and the rest 'day'.

    ``train_rare_factor`` (the positive control) multiplies the number of
    rare frames of the train split only: the random draws do not depend on
    it, so the val split keeps exactly the same modes (and, as every frame
    is generated from its own seed and mode, the same files), the train
    split keeps its total size and its rare frames of factor 1, and the
    extra rare frames are new frames (train frames that are day or dusk at
    factor 1), not repeats.

    Returns:
        dict: sample id -> mode name.
    """
    train_ids = list(train_ids)
    val_ids = list(val_ids)
    check_rare_fractions(rare_fraction, val_rare_fraction)
    train_rare_factor = check_train_rare_factor(train_rare_factor,
                                                rare_fraction)
    if rare_fraction is not None:
        modes = {}
        for ids, share, factor in ((train_ids, rare_fraction,
                                    train_rare_factor),
                                   (val_ids, val_rare_fraction, 1)):
            n = len(ids)
            n_rare = factor * (0 if share == 0 else
                               max(1, int(round(share * n))))
            n_dusk = int(round(DUSK_FRACTION * n))
            if n - n_rare - n_dusk < 1:
                raise ValueError(
                    f'a split of {n} frames with rare share {share} (x '
                    f'{factor}) leaves no day frame; use more frames or a '
                    'smaller share')
            order = rng.permutation(n)
            for j, k in enumerate(order):
                modes[ids[k]] = (RARE_MODE if j < n_rare else
                                 'dusk' if j < n_rare + n_dusk else 'day')
        return modes
    num = len(train_ids) + len(val_ids)
    counts = count_modes(num)
    n_rare = counts[RARE_MODE]
    frac_train = len(train_ids) / num
    n_rare_train = min(len(train_ids), max(1, int(round(n_rare * frac_train))))
    n_rare_val = min(len(val_ids), n_rare - n_rare_train)
    n_rare_train = n_rare - n_rare_val
    tr = list(rng.permutation(len(train_ids)))
    va = list(rng.permutation(len(val_ids)))
    modes = {}
    for k in tr[:n_rare_train]:
        modes[train_ids[k]] = RARE_MODE
    for k in va[:n_rare_val]:
        modes[val_ids[k]] = RARE_MODE
    rest = [train_ids[k] for k in tr[n_rare_train:]] + \
        [val_ids[k] for k in va[n_rare_val:]]
    order = rng.permutation(len(rest))
    for j, k in enumerate(order):
        modes[rest[k]] = 'dusk' if j < counts['dusk'] else 'day'
    return modes


# --------------------------------------------------------------------------
# Output directories
# --------------------------------------------------------------------------
def check_output_root(root, overwrite):
    """Validate the output path before any work; raise a clear error
    (:class:`~mmdet3d_equity.utils.fileio.OutputError`) naming the fix. Creates
    only the parent directory, which must be writable (the dataset is built
    next to ``root`` and renamed into place)."""
    root = osp.abspath(osp.expanduser(str(root)))
    if osp.exists(root) and not osp.isdir(root):
        raise OutputError(
            f'output path {root!r} exists and is a file, not a directory; '
            'choose another output directory (or remove the file)')
    if osp.isdir(root) and os.listdir(root) and not overwrite:
        raise OutputExistsError(
            f'output directory {root!r} already exists and is not empty; '
            'pass overwrite=True (CLI: --overwrite) to replace it, or choose '
            'another directory')
    check_output_dir(osp.dirname(root), 'parent')
    return root


def make_build_dir(root):
    """Temporary build dir next to ``root`` (same filesystem => atomic
    rename), with the umask's permissions (``mkdtemp`` makes it 0700)."""
    parent = osp.dirname(root)
    build = tempfile.mkdtemp(prefix='.' + osp.basename(root) + '.building-',
                             dir=parent)
    os.chmod(build, new_dir_mode())
    return build


def commit_build_dir(build, root):
    """Move the finished build dir into place, replacing ``root`` if
    present."""
    old = None
    if osp.lexists(root):
        old = tempfile.mkdtemp(prefix='.' + osp.basename(root) + '.old-',
                               dir=osp.dirname(root))
        os.rmdir(old)
        os.rename(root, old)
    try:
        os.rename(build, root)
    except BaseException:
        if old is not None:
            os.rename(old, root)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def dataset_summary(dataset, frames, class_counts, modes, t_raw, t0):
    """The summary both generators return: frames per split, objects per
    class, frames per appearance mode, timings."""
    import time
    return dict(
        dataset=dataset,
        frames=frames,
        objects=class_counts,
        modes={m: sum(1 for v in modes.values() if v == m) for m in MODES},
        rare_mode=RARE_MODE,
        seconds={'raw': round(t_raw, 2),
                 'total': round(time.time() - t0, 2)})


def write_json(path, obj):
    atomic_write_json(path, obj, indent=1, sort_keys=True)


# --------------------------------------------------------------------------
# mmdet3d's converters
# --------------------------------------------------------------------------
_CONVERTER_PKG = '_mmdet3d_mim_dataset_converters'


def mim_tools_dir():
    import mmdet3d
    path = osp.join(osp.dirname(mmdet3d.__file__), '.mim', 'tools')
    if not osp.isdir(osp.join(path, 'dataset_converters')):
        raise RuntimeError(
            f'mmdet3d dataset converters not found under {path!r}; '
            'reinstall mmdet3d 1.4 from its wheel (it ships .mim/tools)')
    return path


def load_converter(name):
    """Import ``.mim/tools/dataset_converters/<name>.py`` of mmdet3d.

    The folder is registered as a private package so its relative imports
    work and the generic name ``tools`` is never touched.
    """
    if _CONVERTER_PKG not in sys.modules:
        pkg = types.ModuleType(_CONVERTER_PKG)
        pkg.__path__ = [osp.join(mim_tools_dir(), 'dataset_converters')]
        pkg.__package__ = _CONVERTER_PKG
        sys.modules[_CONVERTER_PKG] = pkg
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet3d')
    import mmdet3d.datasets  # noqa: F401  (registers datasets/transforms)
    return importlib.import_module(f'{_CONVERTER_PKG}.{name}')


@contextlib.contextmanager
def quiet_stdout(enabled=True):
    """Swallow the converters' chatty ``print`` output (kept for errors)."""
    if not enabled:
        yield None
        return
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield buf
    except BaseException as e:
        sys.stderr.write(buf.getvalue()[-4000:])
        raise e


@contextlib.contextmanager
def working_dir(path):
    prev = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(prev)


# --------------------------------------------------------------------------
# Geometry / drawing helpers
# --------------------------------------------------------------------------
#: Face vertex indices of the 8 corners of mmdet3d LiDAR boxes
#: (x0y0z0, x0y0z1, x0y1z1, x0y1z0, x1y0z0, x1y0z1, x1y1z1, x1y1z0).
BOX_FACES = np.array([
    [0, 1, 2, 3],  # back (x0)
    [4, 5, 6, 7],  # front (x1)
    [0, 1, 5, 4],  # side y0
    [3, 2, 6, 7],  # side y1
    [1, 2, 6, 5],  # top
])


def lidar_box_corners(boxes):
    """(N, 7) bottom-centred LiDAR boxes -> (N, 8, 3) corners (mmdet3d)."""
    from mmdet3d.structures import LiDARInstance3DBoxes
    if len(boxes) == 0:
        return np.zeros((0, 8, 3))
    return LiDARInstance3DBoxes(
        np.asarray(boxes, dtype=np.float64)).corners.numpy().astype(np.float64)


def visible_faces(corners, eye):
    """Faces of a box (8, 3) whose outside is seen from point ``eye``."""
    centre = corners.mean(0)
    out = []
    for face in BOX_FACES:
        fc = corners[face].mean(0)
        normal = fc - centre
        if np.dot(normal, fc - eye) < 0:
            out.append(face)
    return out


def sample_box_surface(corners, eye, n, rng, shrink=0.985):
    """Points on the faces of box ``corners`` visible from ``eye``.

    Points are pulled slightly towards the box centre so that they count as
    inside the box for mmdet3d's points-in-box tests.
    """
    faces = visible_faces(corners, eye)
    if not faces or n <= 0:
        return np.zeros((0, 3))
    areas = []
    for f in faces:
        a, b, d = corners[f[0]], corners[f[1]], corners[f[3]]
        areas.append(np.linalg.norm(np.cross(b - a, d - a)))
    areas = np.asarray(areas)
    counts = rng.multinomial(n, areas / areas.sum())
    centre = corners.mean(0)
    pts = []
    for f, c in zip(faces, counts):
        if c == 0:
            continue
        a, b, d = corners[f[0]], corners[f[1]], corners[f[3]]
        s = rng.random((c, 1))
        t = rng.random((c, 1))
        p = a + s * (b - a) + t * (d - a)
        pts.append(centre + (p - centre) * shrink)
    return np.concatenate(pts, 0) if pts else np.zeros((0, 3))


def occlude_by_zbuffer(xyz, is_occluder, res_deg=0.35, margin=0.4):
    """Remove points hidden behind occluder points (as a LiDAR would).

    Directions are binned in (azimuth, elevation); in every bin, points
    farther than the nearest occluder point (+ ``margin``) are dropped.

    Returns:
        np.ndarray: bool keep-mask.
    """
    rng_ = np.linalg.norm(xyz, axis=1) + 1e-6
    # The odd offsets keep regular scan patterns (e.g. azimuths on a 0.5 deg
    # grid) off the bin edges: a value exactly on an edge could fall on either
    # side depending on last-bit differences of the vectorised trig
    # functions, which would make the output depend on memory alignment.
    az = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0])) + 180.0 + 0.01234567
    el = np.degrees(np.arcsin(np.clip(xyz[:, 2] / rng_, -1, 1))) + 90.0 + \
        0.00765432
    n_az = int(np.ceil(360.0 / res_deg)) + 1
    bins = (np.floor(el / res_deg).astype(np.int64) * n_az +
            np.floor(az / res_deg).astype(np.int64))
    zbuf = np.full(int(np.ceil(180.0 / res_deg) + 2) * n_az, np.inf)
    np.minimum.at(zbuf, bins[is_occluder], rng_[is_occluder])
    return rng_ <= zbuf[bins] + margin


def clip_polygon_near(poly_cam, near=0.3):
    """Clip a 3D polygon (M, 3, camera coords, z forward) to z >= near."""
    out = []
    m = len(poly_cam)
    for i in range(m):
        p, q = poly_cam[i], poly_cam[(i + 1) % m]
        pin, qin = p[2] >= near, q[2] >= near
        if pin:
            out.append(p)
        if pin != qin:
            t = (near - p[2]) / (q[2] - p[2])
            out.append(p + t * (q - p))
    return np.asarray(out)


def project(points_cam, K):
    """Pinhole projection of camera-frame points with 3x3(+) intrinsics."""
    K = np.asarray(K)[:3, :3]
    uvw = points_cam @ K.T
    return uvw[:, :2] / uvw[:, 2:3]


def face_cells(quad, nu, nv):
    """Split a 3D quad (4, 3) [a, b, c, d] (a->b: 'up', a->d: 'along') into
    nu x nv sub-quads; yields (iu, iv, (4, 3) cell)."""
    a, b, c, d = quad
    for iv in range(nv):
        for iu in range(nu):
            s0, s1 = iv / nv, (iv + 1) / nv
            t0, t1 = iu / nu, (iu + 1) / nu

            def pt(s, t):
                return a + s * (b - a) + t * (d - a)

            yield iu, iv, np.stack([pt(s0, t0), pt(s1, t0), pt(s1, t1),
                                    pt(s0, t1)])


#: Per-class paint: base BGR colour and texture pattern, shared by the two
#: datasets (KITTI names and nuScenes detection names).
CLASS_PAINT = {
    'Car': ((40, 40, 200), 'windows'),
    'car': ((40, 40, 200), 'windows'),
    'Pedestrian': ((200, 120, 30), 'stripes'),
    'pedestrian': ((200, 120, 30), 'stripes'),
    'Cyclist': ((30, 200, 230), 'checker'),
    'bicycle': ((30, 200, 230), 'checker'),
}


def cell_colour(base, pattern, iu, iv, nu, nv, shade):
    base = np.asarray(base, dtype=np.float64)
    if pattern == 'windows':
        # dark glass band in the upper part of the body
        if iv == nv - 2:
            base = np.array([70, 55, 45.0])
    elif pattern == 'stripes':
        if iu % 2 == 1:
            base = base * 0.45 + np.array([120, 120, 120.0]) * 0.55
    elif pattern == 'checker':
        if (iu + iv) % 2 == 1:
            base = np.array([25, 25, 25.0])
    return tuple(float(c) for c in np.clip(base * shade, 0, 255))


FACE_SUBDIV = {'windows': (3, 4), 'stripes': (4, 3), 'checker': (4, 4)}


def apply_image_style(img, depth, mode, rng):
    """Whole-frame appearance style of a mode on a BGR float image.

    day: as drawn (+ small sensor noise);  dusk: darker, warm orange tint;
    fog: depth dependent haze towards bright grey, low contrast.
    """
    img = img.astype(np.float32)
    h, w = img.shape[:2]
    if mode == 'day':
        img = img + rng.normal(0, 3.0, (h, w, 1)).astype(np.float32)
    elif mode == 'dusk':
        img = img * np.array([0.35, 0.5, 0.75], np.float32)
        img = img + rng.normal(0, 4.0, (h, w, 1)).astype(np.float32)
    elif mode == 'fog':
        t = np.exp(-np.minimum(depth, 1e4) / 14.0)[..., None]
        haze = np.array([215, 212, 208], np.float32)
        img = img * (0.55 * t + 0.1) + haze * (1.0 - (0.55 * t + 0.1))
        img = img + rng.normal(0, 2.0, (h, w, 1)).astype(np.float32)
    else:
        raise ValueError(f'unknown mode {mode!r}; expected one of {MODES}')
    return np.clip(img, 0, 255).astype(np.uint8)


#: The fog style's settings a generator call may change (``fog_style``),
#: with the create_tiny_dataset.py flag of each.
FOG_STYLE_FLAGS = {'att': '--fog-attenuation', 'inten': '--fog-intensity',
                   'scatter': '--fog-scatter'}
FOG_STYLE_KEYS = tuple(FOG_STYLE_FLAGS)


def fog_lidar_style(fog_style=None, names=None):
    """The rare mode's LiDAR style: ``LIDAR_STYLE['fog']`` with the settings
    of ``fog_style`` (a dict with keys among FOG_STYLE_KEYS: attenuation
    length in m, intensity scale in (0, 1], number of scatter returns).
    ``names`` (key -> name) names the settings in the errors, e.g.
    FOG_STYLE_FLAGS; default ``fog_style <key>``."""
    def name(k):
        return (names or {}).get(k, f'fog_style {k}')

    style = dict(LIDAR_STYLE[RARE_MODE])
    if not fog_style:
        return style
    if not isinstance(fog_style, dict):
        raise TypeError(f'fog_style must be a dict with keys among '
                        f'{FOG_STYLE_KEYS}, got {fog_style!r}')
    unknown = sorted(set(fog_style) - set(FOG_STYLE_KEYS))
    if unknown:
        raise ValueError(f'unknown fog_style keys {unknown}; the keys are '
                         f'{list(FOG_STYLE_KEYS)}')
    att, inten, scatter = (fog_style.get(k, style[k])
                           for k in FOG_STYLE_KEYS)
    if isinstance(att, bool) or not isinstance(
            att, (int, float)) or not att > 0:
        raise ValueError(f'{name("att")} (attenuation length, m) must be a '
                         f'number > 0, got {att!r}; e.g. 22')
    if isinstance(inten, bool) or not isinstance(
            inten, (int, float)) or not 0 < inten <= 1:
        raise ValueError(f'{name("inten")} (intensity scale) must be in '
                         f'(0, 1], got {inten!r}; e.g. 0.45')
    if isinstance(scatter, bool) or not isinstance(
            scatter, (int, np.integer)) or scatter < 0:
        raise ValueError(f'{name("scatter")} (scatter returns) must be an '
                         f'int >= 0, got {scatter!r}; e.g. 700')
    style.update(att=float(att), inten=float(inten), scatter=int(scatter))
    return style


def lidar_mode_filter(xyz, inten, mode, rng, style=None):
    """Apply a mode's LiDAR style to (xyz, intensity); returns new arrays.
    ``style`` replaces ``LIDAR_STYLE[mode]`` (see fog_lidar_style)."""
    st = LIDAR_STYLE[mode] if style is None else style
    r = np.linalg.norm(xyz, axis=1)
    keep_p = np.full(len(xyz), st['keep'])
    if st['att'] is not None:
        keep_p = keep_p * np.exp(-r / st['att'])
    keep = rng.random(len(xyz)) < keep_p
    xyz = xyz[keep]
    inten = inten[keep] * st['inten']
    xyz = xyz + rng.normal(0, st['noise'], xyz.shape)
    if st['scatter']:
        n = st['scatter']
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        d[:, 2] = -np.abs(d[:, 2]) * 0.5
        rr = rng.uniform(1.0, 7.0, (n, 1))
        xyz = np.concatenate([xyz, d * rr], 0)
        inten = np.concatenate([inten, rng.uniform(0.0, 0.08, n)], 0)
    return xyz, np.clip(inten, 0.0, 1.0)
