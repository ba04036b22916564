"""Synthetic tiny nuScenes dataset (v1.0-mini layout).

Writes a minimal but valid nuScenes table set (``v1.0-mini/*.json``: scene,
sample, sample_data, ego_pose, calibrated_sensor, sensor, log, map, category,
attribute, visibility, instance, sample_annotation), the key-frame LiDAR
sweeps ``samples/LIDAR_TOP/*.pcd.bin`` (float32 x, y, z, intensity 0-255,
ring) and the six camera images ``samples/CAM_*/*.jpg`` at the real
1600x900 resolution and nuScenes-like calibration; then runs mmdet3d 1.4's
``nuscenes_converter.create_nuscenes_infos`` + ``update_pkl_infos`` (v2) and
``create_groundtruth_database`` exactly as ``tools/create_data.py nuscenes
--version v1.0-mini`` does.  The ten scenes are named after
``nuscenes.utils.splits.mini_train`` / ``mini_val`` so the converter splits
them (8 train scenes, 2 val scenes).

Each scene is a straight road between two building facades; the ego drives
along it at 10 m/s (one key frame every 0.5 s); static cars, pedestrians and
bicycles stand along the road (global frame), so instances persist across
the samples of a scene (prev/next linked, zero velocity).  No intermediate
sweeps are written (``sample_data.prev/next`` of key frames are empty); the
stock ``LoadPointsFromMultiSweeps`` then pads with the key frame.

Scene descriptions (``scene.json``) carry the words nuScenes users slice by
(``Night``, ``Rain``; :data:`SCENE_DESCRIPTIONS`), so that slicing by scene
description can be exercised: they are labels only (the rendering of a
sample follows its frame mode in ``frame_modes.json``, not its scene's
description). One validation scene is at night in the rain, the other by
day (its description mentions a train, which is not rain).
"""
import hashlib
import os
import os.path as osp
import shutil
import tempfile
import time

import numpy as np

from . import _common as C

VERSION = 'v1.0-mini'
IMG_W, IMG_H = 1600, 900
#: general nuScenes category -> (detection name, (w, l, h) mean, std, attr)
CATEGORIES = {
    'vehicle.car': ('car', (1.95, 4.6, 1.73), (0.1, 0.25, 0.08),
                    'vehicle.parked'),
    'human.pedestrian.adult': ('pedestrian', (0.67, 0.73, 1.77),
                               (0.05, 0.05, 0.08), 'pedestrian.standing'),
    'vehicle.bicycle': ('bicycle', (0.6, 1.7, 1.3), (0.04, 0.08, 0.06),
                        'cycle.without_rider'),
}
CATEGORY_PROBS = (0.7, 0.2, 0.1)
INTENSITY = {'car': 150.0, 'pedestrian': 70.0, 'bicycle': 110.0}
ATTRIBUTES = ('cycle.with_rider', 'cycle.without_rider', 'pedestrian.moving',
              'pedestrian.standing', 'pedestrian.sitting_lying_down',
              'vehicle.moving', 'vehicle.parked', 'vehicle.stopped')
VISIBILITY = (('1', 'v0-40'), ('2', 'v40-60'), ('3', 'v60-80'),
              ('4', 'v80-100'))
SPEED = 10.0            # m/s
DT = 0.5                # s between key frames
ANNOT_RANGE = 55.0      # annotate objects within this distance of the ego
LIDAR_HEIGHT = 1.84

# Sensor rig: (channel, translation in ego, yaw of the optical axis (deg),
# focal length in px at 1600x900).  Cameras are level; LIDAR_TOP is rotated
# -90 deg about z as in nuScenes (x right, y forward).
CAMERAS = (
    ('CAM_FRONT', (1.70, 0.00, 1.51), 0.0, 1266.4),
    ('CAM_FRONT_RIGHT', (1.55, -0.49, 1.49), -55.0, 1260.8),
    ('CAM_FRONT_LEFT', (1.52, 0.49, 1.51), 55.0, 1272.6),
    ('CAM_BACK', (0.03, 0.00, 1.58), 180.0, 809.2),
    ('CAM_BACK_LEFT', (1.04, 0.48, 1.57), 110.0, 1256.7),
    ('CAM_BACK_RIGHT', (1.02, -0.48, 1.56), -110.0, 1259.5),
)
LIDAR_T = (0.943713, 0.0, LIDAR_HEIGHT)
LIDAR_YAW = -90.0
#: scene descriptions, in the order of mini_train (8 scenes) + mini_val (2)
SCENE_DESCRIPTIONS = (
    'Day, synthetic road, parked cars',
    'Night, synthetic road, pedestrians',
    'Rain, synthetic road, wet ground',
    'Night, rain, synthetic road',
    'Day, synthetic road, bicycles',
    'Day, synthetic road',
    'Day, synthetic road, peds on sidewalk',
    'Day, synthetic road, parked cars',
    'Night, rain, synthetic road, parked cars',
    'Day, synthetic road past a train depot',
)


def _quat_z(yaw):
    """(w, x, y, z) quaternion of a rotation by ``yaw`` (rad) about z."""
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def _rot_z(yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


#: camera axes (x right, y down, z forward) expressed in a level ego frame
#: looking along +x.
_CAM_BASE = np.array([[0, 0, 1.0], [-1.0, 0, 0], [0, -1.0, 0]])


def _cam_rotation(yaw_deg):
    """Camera -> ego rotation matrix and (w, x, y, z) quaternion."""
    from pyquaternion import Quaternion
    rot = _rot_z(np.radians(yaw_deg)) @ _CAM_BASE
    q = Quaternion(matrix=rot)
    q = q if q.w >= 0 else -q
    # re-derive the matrix from the (rounded) quaternion that is stored
    qv = [round(float(v), 12) for v in q.elements]
    return Quaternion(qv).rotation_matrix, qv


def _intrinsic(focal):
    return [[focal, 0.0, IMG_W / 2 + 16.3], [0.0, focal, IMG_H / 2 + 41.5],
            [0.0, 0.0, 1.0]]


class _Tokens:

    def __init__(self, seed):
        self.seed = seed

    def __call__(self, *key):
        s = '/'.join(str(k) for k in (self.seed, ) + key)
        return hashlib.md5(s.encode()).hexdigest()


# --------------------------------------------------------------------------
# Scene content
# --------------------------------------------------------------------------
def _make_scene(rng, n_samples):
    """Road, facades and static objects of one scene (global frame)."""
    heading = float(rng.uniform(-np.pi, np.pi))
    origin = np.array([rng.uniform(300, 1500), rng.uniform(300, 1500), 0.0])
    length = SPEED * DT * (n_samples - 1)
    walls = (float(rng.uniform(12.5, 16.0)), float(rng.uniform(12.5, 16.0)))
    n_obj = int(round((length + 110.0) / 6.0))
    objs = []
    tries = 0
    cat_names = list(CATEGORIES)
    while len(objs) < n_obj and tries < 40 * n_obj:
        tries += 1
        cat = cat_names[rng.choice(3, p=CATEGORY_PROBS)]
        det, mean, std, attr = CATEGORIES[cat]
        for _ in range(30):
            s = rng.uniform(-55.0, length + 55.0)
            if det == 'car':
                t = float(rng.choice([1.8, 5.4, -5.4, 8.6, -8.6]))
                t += rng.normal(0, 0.2)
                yaw = 0.0 if t < 0 else (np.pi if t < 7 else 0.0)
                yaw += rng.normal(0, 0.08)
            elif det == 'pedestrian':
                t = float(rng.choice([-1, 1]) * rng.uniform(9.8, 11.0))
                yaw = rng.uniform(-np.pi, np.pi)
            else:
                t = float(rng.choice([-1, 1]) * rng.uniform(7.0, 7.6))
                yaw = rng.choice([0.0, np.pi]) + rng.normal(0, 0.1)
            w, l, h = [float(m + sd * rng.standard_normal())  # noqa: E741
                       for m, sd in zip(mean, std)]
            rad = 0.5 * np.hypot(l, w) + 0.4
            if any(np.hypot(s - o['s'], t - o['t']) < rad + o['rad']
                   for o in objs):
                continue
            objs.append(dict(cat=cat, det=det, attr=attr, s=s, t=t,
                             yaw_road=float(yaw), wlh=(w, l, h), rad=rad))
            break
    direction = np.array([np.cos(heading), np.sin(heading), 0.0])
    perp = np.array([-np.sin(heading), np.cos(heading), 0.0])
    for o in objs:
        o['center'] = (origin + o['s'] * direction + o['t'] * perp +
                       np.array([0, 0, o['wlh'][2] / 2]))
        o['yaw'] = float(heading + o['yaw_road'])
    return dict(heading=heading, origin=origin, dir=direction, perp=perp,
                walls=walls, objs=objs)


def _ego_pose(scene, k):
    pos = scene['origin'] + SPEED * DT * k * scene['dir'] - 1.8 * \
        scene['perp']
    return pos, scene['heading']


def _world_quads(scene, ego_pos):
    """Static scenery quads near the ego (global frame): lane dashes and
    facade cells, each (4, 3), with BGR colours."""
    quads, cols = [], []
    d, p, o = scene['dir'], scene['perp'], scene['origin']
    s_ego = float(np.dot(ego_pos - o, d))
    s0 = np.floor((s_ego - 70) / 9.0) * 9.0
    for t in (0.0, 3.6, -3.6):
        for s in np.arange(s0, s_ego + 70, 9.0):
            a = o + s * d + (t - 0.08) * p
            b = o + (s + 3) * d + (t - 0.08) * p
            quads.append(np.stack([a, b, b + 0.16 * p, a + 0.16 * p]) +
                         np.array([0, 0, 0.01]))
            cols.append((225, 225, 225))
    s0 = np.floor((s_ego - 80) / 4.0) * 4.0
    for side, dist, base in ((1, scene['walls'][0], (90, 110, 140)),
                             (-1, scene['walls'][1], (120, 120, 100))):
        for s in np.arange(s0, s_ego + 80, 4.0):
            a = o + s * d + side * dist * p
            b = a + 4 * d
            up = np.array([0, 0, 7.0])
            quads.append(np.stack([a, a + up, b + up, b]))
            shade = 1.0 if int(round(s / 4.0)) % 2 == 0 else 0.75
            cols.append(tuple(c * shade for c in base))
    return quads, cols


def _object_quads(corners, det, oid):
    base, pattern = C.CLASS_PAINT[det]
    nu, nv = C.FACE_SUBDIV[pattern]
    centre = corners.mean(0)
    light = np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])
    quads, cols, ids = [], [], []
    for face in C.BOX_FACES:
        quad = corners[face]
        normal = quad.mean(0) - centre
        normal /= np.linalg.norm(normal)
        shade = 0.55 + 0.45 * max(0.0, float(np.dot(normal, light)))
        is_top = face[0] == 1 and face[1] == 2
        nvv = 1 if is_top else nv
        for iu, iv, cell in C.face_cells(quad, nu, nvv):
            quads.append(cell)
            cols.append(C.cell_colour(base, pattern, iu, iv, nu, nvv, shade))
            ids.append(oid)
    return quads, cols, ids


def _render_camera(K, ego2cam, cam_h, quads, cols, mode, rng, noise):
    """Painter's-algorithm rendering of ego-frame quads in one camera."""
    import cv2
    fy, cy = K[1][1], K[1][2]
    rows = np.arange(IMG_H, dtype=np.float32)[:, None]
    sky_t = np.clip(rows / cy, 0, 1)[..., None]
    sky = (np.array([235, 200, 150], np.float32) * (1 - sky_t) +
           np.array([250, 235, 215], np.float32) * sky_t)
    ground = np.broadcast_to(np.array([105, 105, 110], np.float32),
                             (IMG_H, 1, 3))
    col = np.where((rows > cy)[..., None], ground, sky)
    img = np.ascontiguousarray(
        np.broadcast_to(col, (IMG_H, IMG_W, 3)).astype(np.uint8))
    need_depth = mode == 'fog'
    if need_depth:
        gdepth = np.where(rows > cy + 0.5,
                          fy * cam_h / np.maximum(rows - cy, 0.5), 1e4)
        depth = np.ascontiguousarray(
            np.broadcast_to(gdepth, (IMG_H, IMG_W)).astype(np.float32))
    R, t = ego2cam[:3, :3], ego2cam[:3, 3]
    P = np.asarray(quads) @ R.T + t            # (Q, 4, 3)
    zmax = P[..., 2].max(1)
    zmin = P[..., 2].min(1)
    dist = np.linalg.norm(P.mean(1), axis=1)
    Kn = np.asarray(K)
    order = np.argsort(-dist, kind='stable')
    for q in order:
        if zmax[q] <= 0.3:
            continue
        poly = P[q] if zmin[q] > 0.3 else C.clip_polygon_near(P[q], 0.3)
        if len(poly) < 3:
            continue
        uv = C.project(poly, Kn)
        if (uv[:, 0].max() < 0 or uv[:, 0].min() > IMG_W or
                uv[:, 1].max() < 0 or uv[:, 1].min() > IMG_H):
            continue
        pts = np.round(np.clip(uv, -1e5, 1e5) * 16).astype(np.int32)
        cv2.fillPoly(img, [pts], cols[q], shift=4)
        if need_depth:
            cv2.fillPoly(depth, [pts], float(dist[q]), shift=4)
    # mode style (fast uint8 paths for the common modes)
    if mode == 'day':
        out = cv2.add(img, noise[0])
        out = cv2.subtract(out, noise[1])
    elif mode == 'dusk':
        out = cv2.multiply(img, np.array([0.35, 0.5, 0.75, 0.0]))
        out = cv2.add(out, noise[0])
        out = cv2.subtract(out, noise[1])
    else:
        out = C.apply_image_style(img, depth, mode, rng)
    return out


def _make_sweep(rng, ego_objs, corners_ego, walls_info, mode):
    """LiDAR key-frame points in the ego frame + per-object point counts.

    Returns (N, 3) xyz (ego), (N,) intensity (0-255), object index per point
    (-1: not an object).
    """
    origin = np.array(LIDAR_T)
    parts, inten, occl, owner = [], [], [], []
    # ground rings (32-beam sensor, lower beams)
    elev = np.radians(np.linspace(-30.0, -1.0, 26))
    az = np.radians(np.arange(0.0, 360.0, 0.5))
    ee, aa = np.meshgrid(elev, az, indexing='ij')
    aa = aa + rng.uniform(-0.002, 0.002, aa.shape)  # azimuth jitter
    r = LIDAR_HEIGHT / np.tan(-ee) * (1 + rng.normal(0, 0.004, ee.shape))
    keep = r < 70.0
    g = np.stack([(r * np.cos(aa))[keep] + origin[0],
                  (r * np.sin(aa))[keep] + origin[1],
                  rng.normal(0, 0.015, int(keep.sum()))], 1)
    parts.append(g)
    inten.append(np.clip(rng.normal(15, 4, len(g)), 0, 255))
    occl.append(np.zeros(len(g), bool))
    owner.append(np.full(len(g), -1))
    # facades (ego-frame quads: sample on them, density ~ 1/r^2)
    for quad in walls_info:
        a, b, d = quad[0], quad[1], quad[3]
        n = 40
        s = rng.random((n, 1))
        t = rng.random((n, 1))
        p = a + s * (b - a) + t * (d - a)
        rr = np.linalg.norm(p[:, :2] - origin[:2], axis=1)
        p = p[rng.random(n) < np.clip((10.0 / rr)**2, 0.05, 1.0)]
        parts.append(p)
        inten.append(np.clip(rng.normal(40, 8, len(p)), 0, 255))
        occl.append(np.ones(len(p), bool))
        owner.append(np.full(len(p), -1))
    for k, (o, corners) in enumerate(zip(ego_objs, corners_ego)):
        w, l, h = o['wlh']  # noqa: E741
        d = np.linalg.norm(corners.mean(0)[:2] - origin[:2])
        n = int(np.clip(4000.0 * (l * h + w * h) / max(d, 2.0)**2, 10, 2500))
        p = C.sample_box_surface(corners, origin, n, rng)
        parts.append(p)
        inten.append(np.clip(rng.normal(INTENSITY[o['det']], 12, len(p)),
                             0, 255))
        occl.append(np.ones(len(p), bool))
        owner.append(np.full(len(p), k))
    n = 200
    p = np.stack([rng.uniform(-50, 50, n), rng.uniform(-50, 50, n),
                  rng.uniform(0.1, 2.5, n)], 1)
    parts.append(p)
    inten.append(rng.uniform(0, 60, n))
    occl.append(np.zeros(n, bool))
    owner.append(np.full(n, -1))

    xyz = np.concatenate(parts, 0)
    it = np.concatenate(inten, 0)
    own = np.concatenate(owner, 0)
    n_sampled = np.bincount(own[own >= 0], minlength=len(ego_objs))
    keep = C.occlude_by_zbuffer(xyz - origin, np.concatenate(occl, 0))
    xyz, it, own = xyz[keep], it[keep], own[keep]
    n_visible = np.bincount(own[own >= 0], minlength=len(ego_objs))
    # mode style (works on sensor-centred coordinates, intensity in [0, 1])
    rel, it01 = C.lidar_mode_filter(xyz - origin, it / 255.0, mode, rng)
    return rel + origin, it01 * 255.0, n_sampled, n_visible


def create_tiny_nuscenes(root, num_samples=40, seed=0, overwrite=False,
                         progress=False):
    """Write a synthetic tiny nuScenes dataset (v1.0-mini layout) at ``root``.

    Args:
        root (str): output directory (must not exist or be empty, unless
            ``overwrite``).
        num_samples (int): number of key frames (samples), >= 16; they are
            spread over the 10 mini scenes (8 train, 2 val).
        seed (int): random seed; the same seed gives byte-identical files.
        overwrite (bool): replace an existing non-empty ``root``.
        progress (bool): show progress bars and the converters' output.

    Returns:
        dict: paths (``root``, ``info_train``, ``info_val``, ``dbinfos``,
        ``gt_database``, ``frame_modes``, ``tables``) and a ``summary``.
    """
    from mmdet3d.structures.ops import box_np_ops
    from nuscenes.utils import splits
    from pyquaternion import Quaternion
    num_samples = _check_int('num_samples', num_samples, C.MIN_FRAMES)
    seed = _check_int('seed', seed, 0)
    root = C.check_output_root(root, overwrite)
    t0 = time.time()
    tok = _Tokens(seed)
    rng = np.random.default_rng([seed, 11])

    scene_names = list(splits.mini_train) + list(splits.mini_val)
    val_names = set(splits.mini_val)
    per_scene = [num_samples // len(scene_names)] * len(scene_names)
    for i in range(num_samples % len(scene_names)):
        per_scene[i] += 1

    # sample tokens and splits first (modes need them)
    sample_tokens, split_of = [], {}
    for si, name in enumerate(scene_names):
        for k in range(per_scene[si]):
            st = tok('sample', si, k)
            sample_tokens.append(st)
            split_of[st] = 'val' if name in val_names else 'train'
    modes = C.assign_modes([s for s in sample_tokens
                            if split_of[s] == 'train'],
                           [s for s in sample_tokens if split_of[s] == 'val'],
                           rng)

    tables = {k: [] for k in (
        'category', 'attribute', 'visibility', 'instance', 'sensor',
        'calibrated_sensor', 'ego_pose', 'log', 'scene', 'sample',
        'sample_data', 'sample_annotation', 'map')}
    for cat in CATEGORIES:
        tables['category'].append(dict(token=tok('category', cat), name=cat,
                                       description=f'synthetic {cat}'))
    for attr in ATTRIBUTES:
        tables['attribute'].append(dict(token=tok('attribute', attr),
                                        name=attr, description=attr))
    for vt, level in VISIBILITY:
        tables['visibility'].append(dict(token=vt, level=level,
                                         description=f'visibility {level}'))
    # sensors + calibration (one calibrated_sensor per sensor)
    lidar_q = _quat_z(np.radians(LIDAR_YAW))
    calib = {}
    sensors = [('LIDAR_TOP', 'lidar')] + [(c[0], 'camera') for c in CAMERAS]
    for ch, modality in sensors:
        tables['sensor'].append(dict(token=tok('sensor', ch), channel=ch,
                                     modality=modality))
    tables['calibrated_sensor'].append(dict(
        token=tok('calib', 'LIDAR_TOP'), sensor_token=tok('sensor',
                                                          'LIDAR_TOP'),
        translation=list(LIDAR_T), rotation=lidar_q, camera_intrinsic=[]))
    for ch, trans, yaw, focal in CAMERAS:
        rot, q = _cam_rotation(yaw)
        K = _intrinsic(focal)
        tables['calibrated_sensor'].append(dict(
            token=tok('calib', ch), sensor_token=tok('sensor', ch),
            translation=list(trans), rotation=q, camera_intrinsic=K))
        cam2ego = np.eye(4)
        cam2ego[:3, :3] = rot
        cam2ego[:3, 3] = trans
        calib[ch] = dict(K=K, ego2cam=np.linalg.inv(cam2ego),
                         height=trans[2])
    lidar2ego = np.eye(4)
    lidar2ego[:3, :3] = Quaternion(lidar_q).rotation_matrix
    lidar2ego[:3, 3] = LIDAR_T
    ego2lidar = np.linalg.inv(lidar2ego)

    log_tok = tok('log', 0)
    log_name = f'n000-2020-01-01-00-00-00-{seed % 10000:04d}'
    tables['log'].append(dict(token=log_tok, logfile=log_name,
                              vehicle='synthetic', date_captured='2020-01-01',
                              location='singapore-onenorth'))
    map_tok = tok('map', 0)
    tables['map'].append(dict(token=map_tok, log_tokens=[log_tok],
                              category='semantic_prior',
                              filename=f'maps/{map_tok}.png'))

    build = C.make_build_dir(root)
    try:
        import cv2
        os.makedirs(osp.join(build, VERSION))
        os.makedirs(osp.join(build, 'maps'))
        os.makedirs(osp.join(build, 'samples', 'LIDAR_TOP'))
        for ch, *_ in CAMERAS:
            os.makedirs(osp.join(build, 'samples', ch))
        cv2.imwrite(osp.join(build, 'maps', f'{map_tok}.png'),
                    np.zeros((20, 20), np.uint8))
        nrng = np.random.default_rng([seed, 12])
        noise_full = nrng.normal(0, 3.0, (IMG_H + 64, IMG_W + 64, 1))
        noise_pos = np.clip(noise_full, 0, 255).astype(np.uint8)
        noise_neg = np.clip(-noise_full, 0, 255).astype(np.uint8)

        class_counts = {d[0]: {'train': 0, 'val': 0}
                        for d in CATEGORIES.values()}
        stats = {}
        inst_anns = {}  # instance token -> list of annotation tokens
        jobs = [(si, k) for si in range(len(scene_names))
                for k in range(per_scene[si])]
        it_jobs = jobs
        if progress:
            import mmengine
            print(f'Writing {num_samples} synthetic nuScenes samples ...')
            it_jobs = mmengine.track_iter_progress(jobs)
        scenes = {}
        for si, k in it_jobs:
            name = scene_names[si]
            if si not in scenes:
                scenes[si] = _make_scene(np.random.default_rng(
                    [seed, 13, si]), per_scene[si])
                st_first = tok('sample', si, 0)
                tables['scene'].append(dict(
                    token=tok('scene', si), log_token=log_tok,
                    nbr_samples=per_scene[si], first_sample_token=st_first,
                    last_sample_token=tok('sample', si, per_scene[si] - 1),
                    name=name, description=SCENE_DESCRIPTIONS[si]))
            scene = scenes[si]
            frng = np.random.default_rng([seed, 14, si, k])
            st = tok('sample', si, k)
            mode = modes[st]
            ts = 1533151600000000 + si * 100000000 + k * int(DT * 1e6)
            tables['sample'].append(dict(
                token=st, timestamp=ts, scene_token=tok('scene', si),
                prev=tok('sample', si, k - 1) if k > 0 else '',
                next=tok('sample', si, k + 1)
                if k + 1 < per_scene[si] else ''))
            pos, yaw = _ego_pose(scene, k)
            ego2global = np.eye(4)
            ego2global[:3, :3] = _rot_z(yaw)
            ego2global[:3, 3] = pos
            global2ego = np.linalg.inv(ego2global)
            ego_q = _quat_z(yaw)

            # objects near the ego, in the ego frame (bottom-centred boxes)
            near = [o for o in scene['objs']
                    if np.linalg.norm(o['center'][:2] - pos[:2]) <
                    ANNOT_RANGE]
            boxes_ego = []
            for o in near:
                c = global2ego[:3, :3] @ o['center'] + global2ego[:3, 3]
                w, l, h = o['wlh']  # noqa: E741
                boxes_ego.append([c[0], c[1], c[2] - h / 2, l, w, h,
                                  o['yaw'] - yaw])
            corners = C.lidar_box_corners(np.array(boxes_ego).reshape(-1, 7))
            quads, cols = _world_quads(scene, pos)
            quads = [q @ global2ego[:3, :3].T + global2ego[:3, 3]
                     for q in quads]
            wall_quads = [q for q, c in zip(quads, cols)
                          if np.ptp(q[:, 2]) > 1.0]
            obj_q, obj_c = [], []
            for j, o in enumerate(near):
                q_, c_, _ = _object_quads(corners[j], o['det'], j)
                obj_q += q_
                obj_c += c_

            # LiDAR
            xyz_e, inten, n_samp, n_vis = _make_sweep(
                frng, near, corners, wall_quads, mode)
            xyz_l = xyz_e @ ego2lidar[:3, :3].T + ego2lidar[:3, 3]
            rel = xyz_e - np.array(LIDAR_T)
            el = np.degrees(np.arctan2(rel[:, 2],
                                       np.linalg.norm(rel[:, :2], axis=1)))
            ring = np.clip(np.round((el + 30.0) / 40.0 * 31), 0, 31)
            pts = np.concatenate([xyz_l, inten[:, None], ring[:, None]],
                                 1).astype(np.float32)
            lidar_sd = tok('sd', si, k, 'LIDAR_TOP')
            fname = f'samples/LIDAR_TOP/{log_name}__LIDAR_TOP__{ts}.pcd.bin'
            pts.tofile(osp.join(build, fname))
            sds = [(lidar_sd, 'LIDAR_TOP', fname, ts, 'pcd', 0, 0)]
            # points per box for num_lidar_pts (boxes in the LiDAR frame)
            if len(near):
                bl = np.array(boxes_ego)
                cl = bl[:, :3] @ ego2lidar[:3, :3].T + ego2lidar[:3, 3]
                bl_l = np.concatenate(
                    [cl, bl[:, 3:6],
                     bl[:, 6:7] - np.radians(LIDAR_YAW)], 1)
                in_box = box_np_ops.points_in_rbbox(pts[:, :3], bl_l)
                n_lidar = in_box.sum(0)
            else:
                n_lidar = np.zeros(0, int)

            # cameras
            bright = []
            all_q = quads + obj_q
            all_c = cols + obj_c
            for ci, (ch, trans, _, _) in enumerate(CAMERAS):
                cam_ts = ts + 10000 + 5000 * ci
                cal = calib[ch]
                off = frng.integers(0, 64, 2)
                noise = (noise_pos[off[0]:off[0] + IMG_H,
                                   off[1]:off[1] + IMG_W, 0],
                         noise_neg[off[0]:off[0] + IMG_H,
                                   off[1]:off[1] + IMG_W, 0])
                noise = tuple(np.ascontiguousarray(
                    np.repeat(n[..., None], 3, 2)) for n in noise)
                img = _render_camera(cal['K'], cal['ego2cam'],
                                     cal['height'], all_q, all_c, mode, frng,
                                     noise)
                fname = f'samples/{ch}/{log_name}__{ch}__{cam_ts}.jpg'
                if not cv2.imwrite(osp.join(build, fname), img,
                                   [cv2.IMWRITE_JPEG_QUALITY, 90]):
                    raise IOError(f'could not write {fname}')
                bright.append(float(img.mean()))
                sds.append((tok('sd', si, k, ch), ch, fname, cam_ts, 'jpg',
                            IMG_W, IMG_H))
            for sd_tok, ch, fname, sd_ts, fmt, w, h in sds:
                tables['ego_pose'].append(dict(
                    token=sd_tok, timestamp=sd_ts, rotation=ego_q,
                    translation=[float(v) for v in pos]))
                tables['sample_data'].append(dict(
                    token=sd_tok, sample_token=st, ego_pose_token=sd_tok,
                    calibrated_sensor_token=tok('calib', ch),
                    timestamp=sd_ts, fileformat=fmt, is_key_frame=True,
                    height=h, width=w, filename=fname, prev='', next=''))
            # annotations
            for j, o in enumerate(near):
                oi = scene['objs'].index(o)
                inst = tok('instance', si, oi)
                ann = tok('ann', si, k, oi)
                frac = n_vis[j] / max(n_samp[j], 1)
                vis = '4' if frac >= 0.8 else '3' if frac >= 0.6 else \
                    '2' if frac >= 0.4 else '1'
                tables['sample_annotation'].append(dict(
                    token=ann, sample_token=st, instance_token=inst,
                    visibility_token=vis,
                    attribute_tokens=[tok('attribute', o['attr'])],
                    translation=[float(v) for v in o['center']],
                    size=[float(v) for v in o['wlh']],
                    rotation=_quat_z(o['yaw']), prev='', next='',
                    num_lidar_pts=int(n_lidar[j]), num_radar_pts=0))
                inst_anns.setdefault(inst, (o['cat'], []))[1].append(ann)
                class_counts[o['det']][split_of[st]] += 1
            stats[st] = dict(points=len(pts), brightness=float(
                np.mean(bright)))

        # link annotations of each instance and write the instance table
        ann_index = {a['token']: a for a in tables['sample_annotation']}
        for inst, (cat, anns) in inst_anns.items():
            for a, b in zip(anns[:-1], anns[1:]):
                ann_index[a]['next'] = b
                ann_index[b]['prev'] = a
            tables['instance'].append(dict(
                token=inst, category_token=tok('category', cat),
                nbr_annotations=len(anns), first_annotation_token=anns[0],
                last_annotation_token=anns[-1]))
        for name, rows in tables.items():
            C.write_json(osp.join(build, VERSION, name + '.json'), rows)
        t_raw = time.time() - t0

        _run_converters(build, progress)

        C.write_json(osp.join(build, 'frame_modes.json'), {
            'dataset': 'nuscenes',
            'rare_mode': C.RARE_MODE,
            'modes': {s: modes[s] for s in sample_tokens},
            'split': {s: split_of[s] for s in sample_tokens},
        })
        C.commit_build_dir(build, root)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    n_train = sum(1 for s in sample_tokens if split_of[s] == 'train')
    summary = C.dataset_summary(
        'nuscenes', {'train': n_train, 'val': num_samples - n_train},
        class_counts, modes, t_raw, t0)
    return dict(
        root=root,
        info_train=osp.join(root, 'nuscenes_infos_train.pkl'),
        info_val=osp.join(root, 'nuscenes_infos_val.pkl'),
        dbinfos=osp.join(root, 'nuscenes_dbinfos_train.pkl'),
        gt_database=osp.join(root, 'nuscenes_gt_database'),
        frame_modes=osp.join(root, 'frame_modes.json'),
        tables=osp.join(root, VERSION),
        summary=summary)


def _run_converters(build, progress):
    nc = C.load_converter('nuscenes_converter')
    up = C.load_converter('update_infos_to_v2')
    gt = C.load_converter('create_gt_database')
    # update_nuscenes_infos opens the tables at the hard-coded
    # './data/nuscenes', so run it from a scratch dir that links there.
    work = tempfile.mkdtemp(prefix='tiny_nus_cwd_')
    try:
        os.makedirs(osp.join(work, 'data'))
        os.symlink(build, osp.join(work, 'data', 'nuscenes'))
        with C.quiet_stdout(not progress), C.working_dir(work):
            nc.create_nuscenes_infos(build, 'nuscenes', version=VERSION,
                                     max_sweeps=10)
            for s in ('train', 'val'):
                up.update_pkl_infos(
                    'nuscenes', out_dir=build,
                    pkl_path=osp.join(build, f'nuscenes_infos_{s}.pkl'))
            gt.create_groundtruth_database('NuScenesDataset', build,
                                           'nuscenes',
                                           'nuscenes_infos_train.pkl')
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f'{name} must be an int, got {value!r}')
    if value < minimum:
        raise ValueError(f'{name} must be >= {minimum}, got {value}')
    return int(value)
