"""Synthetic tiny KITTI dataset in the real on-disk layout.

Raw KITTI files (velodyne .bin, image_2 .png, calib .txt, label_2 .txt,
ImageSets) are written by this module; the info files, the reduced point
clouds and the GT database are then produced by mmdet3d 1.4's own converters
(``kitti_converter.create_kitti_info_file``,
``kitti_converter.create_reduced_point_cloud``,
``update_infos_to_v2.update_pkl_infos`` and
``create_gt_database.create_groundtruth_database``), exactly as
``tools/create_data.py kitti`` does.

Scene model (LiDAR frame: x forward, y left, z up; sensor 1.73 m above a flat
ground): road between two building facades, poles, scattered clutter and
3-class objects standing on the ground inside the front camera's field of
view, 5-38 m ahead.  Points are sampled on the sensor-facing box surfaces and
occluded with a LiDAR-like z-buffer; the image is rendered with the same
boxes projected through the calibration (per-class colours and textures).
"""
import os
import os.path as osp
import shutil
import tempfile
import time

import numpy as np

from . import _common as C

IMG_W, IMG_H = 1242, 375
CLASSES = ('Car', 'Pedestrian', 'Cyclist')
#: Class of every placed object (Car : Pedestrian : Cyclist). Cyclist stays
#: the rare class, but frequent enough to be learnt and measured (with 10 %
#: a 128-frame train split held 86 Cyclists, the val split 24 at moderate).
CLASS_PROBS = (0.55, 0.25, 0.2)
#: Objects placed per frame: uniform in [low, high).
OBJECTS_PER_FRAME = (6, 13)
#: Object returns per m^2 of (l h + w h) at 1 m range (falls with range^2),
#: clipped to OBJECT_POINTS. 15000 gives a Car at 20 m about 180 returns and
#: a Pedestrian about 45 before occlusion and the mode's LiDAR filter (a
#: real HDL-64 gives several times more; with 5000, the earlier value, fog
#: Cyclists kept a median of 7 returns and could not be learnt).
OBJECT_POINT_DENSITY = 15000.0
OBJECT_POINTS = (15, 2500)
#: KITTI (l, h, w) mean sizes and jitter (std) per class.
CLASS_DIMS = {
    'Car': ((3.9, 1.56, 1.6), (0.2, 0.06, 0.07)),
    'Pedestrian': ((0.8, 1.73, 0.6), (0.08, 0.08, 0.05)),
    'Cyclist': ((1.76, 1.73, 0.6), (0.1, 0.06, 0.04)),
}
CLASS_INTENSITY = {'Car': 0.6, 'Pedestrian': 0.3, 'Cyclist': 0.45}
DEPTH_RANGE = (5.0, 37.0)
CAM_HEIGHT = 1.65          # rectified camera above the ground (m)
NUM_TEST_FRAMES = 4        # the converters also read testing/ + test.txt

# Calibration of a real KITTI drive (public sensor set-up values).
P2 = np.array([[7.215377e+02, 0.0, 6.095593e+02, 4.485728e+01],
               [0.0, 7.215377e+02, 1.728540e+02, 2.163791e-01],
               [0.0, 0.0, 1.0, 2.745884e-03]])
P0 = np.array([[7.215377e+02, 0.0, 6.095593e+02, 0.0],
               [0.0, 7.215377e+02, 1.728540e+02, 0.0],
               [0.0, 0.0, 1.0, 0.0]])
P1 = np.array([[7.215377e+02, 0.0, 6.095593e+02, -3.875744e+02],
               [0.0, 7.215377e+02, 1.728540e+02, 0.0],
               [0.0, 0.0, 1.0, 0.0]])
P3 = np.array([[7.215377e+02, 0.0, 6.095593e+02, -3.395242e+02],
               [0.0, 7.215377e+02, 1.728540e+02, 2.199936e+00],
               [0.0, 0.0, 1.0, 2.729905e-03]])
R0_RECT = np.array([[9.999239e-01, 9.837760e-03, -7.445048e-03],
                    [-9.869795e-03, 9.999421e-01, -4.278459e-03],
                    [7.402527e-03, 4.351614e-03, 9.999631e-01]])
TR_VELO_TO_CAM = np.array(
    [[7.533745e-03, -9.999714e-01, -6.166020e-04, -4.069766e-03],
     [1.480249e-02, 7.280733e-04, -9.998902e-01, -7.631618e-02],
     [9.998621e-01, 7.523790e-03, 1.480755e-02, -2.717806e-01]])
TR_IMU_TO_VELO = np.array(
    [[9.999976e-01, 7.553071e-04, -2.035826e-03, -8.086759e-01],
     [-7.854027e-04, 9.998898e-01, -1.482298e-02, 3.195559e-01],
     [2.024406e-03, 1.482454e-02, 9.998881e-01, -7.997231e-01]])


def plane_text():
    """The ground plane file (KITTI ``planes/``, as shipped for the AVOD /
    mmdet3d ``with_plane`` infos): ``a b c d`` with ``a x + b y + c z + d =
    0`` in rectified camera coordinates, normal pointing up (-y). The
    synthetic ground is the plane y = CAM_HEIGHT exactly."""
    return ('# Plane\nWidth 4\nHeight 1\n'
            f'{0.0:e} {-1.0:e} {0.0:e} {CAM_HEIGHT:e}\n')


def _fmt(mat):
    return ' '.join('%.12e' % v for v in np.asarray(mat).reshape(-1))


def calib_text():
    return ''.join([
        f'P0: {_fmt(P0)}\n', f'P1: {_fmt(P1)}\n', f'P2: {_fmt(P2)}\n',
        f'P3: {_fmt(P3)}\n', f'R0_rect: {_fmt(R0_RECT)}\n',
        f'Tr_velo_to_cam: {_fmt(TR_VELO_TO_CAM)}\n',
        f'Tr_imu_to_velo: {_fmt(TR_IMU_TO_VELO)}\n'
    ])


def _mat4(m):
    out = np.eye(4)
    out[:m.shape[0], :m.shape[1]] = m
    return out


RECT4 = _mat4(R0_RECT)
VELO2CAM4 = _mat4(TR_VELO_TO_CAM)
LIDAR2RECT = RECT4 @ VELO2CAM4          # LiDAR -> rectified camera
RECT2LIDAR = np.linalg.inv(LIDAR2RECT)
P2_4 = _mat4(P2)
LIDAR2IMG = P2_4 @ LIDAR2RECT


def lidar_to_rect(xyz):
    return xyz @ LIDAR2RECT[:3, :3].T + LIDAR2RECT[:3, 3]


def rect_to_lidar(xyz):
    return xyz @ RECT2LIDAR[:3, :3].T + RECT2LIDAR[:3, 3]


def project_rect(xyz_rect):
    """Rectified camera coords -> image pixels through P2 (as mmdet3d)."""
    hom = np.concatenate([xyz_rect, np.ones((len(xyz_rect), 1))], 1)
    uvw = hom @ P2.T
    return uvw[:, :2] / uvw[:, 2:3]


def ground_z(x, y):
    """LiDAR z of the ground plane (rectified camera y == CAM_HEIGHT)."""
    m = LIDAR2RECT
    return (CAM_HEIGHT - m[1, 0] * x - m[1, 1] * y - m[1, 3]) / m[1, 2]


# --------------------------------------------------------------------------
# Scene sampling
# --------------------------------------------------------------------------
def _sample_objects(rng, walls, forced=()):
    """Objects in rectified-camera KITTI label convention.

    Returns a list of dicts(name, loc (bottom centre), dims (l, h, w), ry),
    values rounded to the label file precision (2 decimals).
    """
    from mmdet3d.structures.ops import box_np_ops
    n_target = int(rng.integers(*OBJECTS_PER_FRAME))
    objs = []
    fx, cx = P2[0, 0], P2[0, 2]
    tries = 0
    name = None
    # the class of a slot is drawn once and kept until it can be placed, so
    # the placement rejections do not bias the class ratios
    while len(objs) < n_target and tries < 300:
        tries += 1
        k = len(objs)
        if name is None:
            name = forced[k] if k < len(forced) else \
                CLASSES[rng.choice(3, p=CLASS_PROBS)]
        mean, std = CLASS_DIMS[name]
        length, h, w = [round(float(m + s * rng.standard_normal()), 2)
                        for m, s in zip(mean, std)]
        z = rng.uniform(*DEPTH_RANGE)
        xmax = min(0.9 * z * (IMG_W - cx) / fx, 0.9 * z * cx / fx)
        x = rng.uniform(-xmax, xmax)
        # keep clear of the facades (x_rect ~ -y_lidar)
        if not (-walls[0] + 1.5 + max(length, w) / 2 < x <
                walls[1] - 1.5 - max(length, w) / 2):
            continue
        if abs(x) > 18.0:
            continue
        ry = rng.uniform(-np.pi, np.pi)
        loc = np.round(np.array([x, CAM_HEIGHT, z]), 2)
        ry = round(float(ry), 2)
        # no BEV overlap (circles around the footprints, with a margin)
        rad = 0.5 * np.hypot(length, w) + 0.4
        if any(np.hypot(*(loc[[0, 2]] - o['loc'][[0, 2]])) < rad + o['rad']
               for o in objs):
            continue
        cam_box = np.array([[*loc, length, h, w, ry]])
        lidar_box = box_np_ops.box_camera_to_lidar(cam_box, RECT4, VELO2CAM4)
        corners = C.lidar_box_corners(lidar_box)[0]
        uv = project_rect(lidar_to_rect(corners))
        x1, y1 = uv.min(0)
        x2, y2 = uv.max(0)
        full = (x2 - x1) * (y2 - y1)
        cx1, cy1 = max(x1, 0), max(y1, 0)
        cx2, cy2 = min(x2, IMG_W - 1), min(y2, IMG_H - 1)
        inside = max(cx2 - cx1, 0) * max(cy2 - cy1, 0)
        trunc = 1.0 - inside / full
        if trunc > 0.3 or (y2 - y1) < 25:
            continue
        objs.append(dict(name=name, loc=loc, dims=(length, h, w), ry=ry,
                         rad=rad, lidar_box=lidar_box[0], corners=corners,
                         bbox=(cx1, cy1, cx2, cy2), truncated=trunc))
        name = None
    return objs


#: A cyclist's returns: the bicycle spans the box's length up to
#: CYCLIST_BIKE_HEIGHT (m), the rider only the middle CYCLIST_RIDER_LENGTH
#: (m) above it. Without it a cyclist's returns were a box like a
#: pedestrian's, only longer, and sparse cyclists were taken for
#: pedestrians.
CYCLIST_BIKE_HEIGHT = 1.0
CYCLIST_RIDER_LENGTH = 0.6


def _cyclist_silhouette(points, lidar_box):
    """Keep a cyclist's surface points on the bicycle or the rider."""
    x, y, z, _, _, _, yaw = lidar_box
    dx, dy = points[:, 0] - x, points[:, 1] - y
    along = dx * np.cos(yaw) + dy * np.sin(yaw)
    keep = (points[:, 2] - z < CYCLIST_BIKE_HEIGHT) | \
        (np.abs(along) < CYCLIST_RIDER_LENGTH / 2)
    return points[keep]


def _make_points(rng, objs, walls, poles, mode, fog_style=None):
    """Synthetic HDL-64-like sweep: (N, 4) float32 x, y, z, intensity.
    ``fog_style``: the rare mode's LiDAR style (C.fog_lidar_style)."""
    eye = np.zeros(3)
    parts, inten, occl = [], [], []
    # ground: ring pattern of the lower beams
    elev = np.radians(np.linspace(-24.0, -1.3, 34))
    az = np.radians(np.arange(0.0, 360.0, 0.7))
    ee, aa = np.meshgrid(elev, az, indexing='ij')
    aa = aa + rng.uniform(-0.002, 0.002, aa.shape)  # azimuth jitter
    r = 1.73 / np.tan(-ee)
    r = r * (1 + rng.normal(0, 0.004, r.shape))
    keep = r < 75.0
    x = (r * np.cos(aa))[keep]
    y = (r * np.sin(aa))[keep]
    g = np.stack([x, y, ground_z(x, y) + rng.normal(0, 0.015, x.shape)], 1)
    parts.append(g)
    inten.append(np.clip(rng.normal(0.12, 0.03, len(g)), 0, 1))
    occl.append(np.zeros(len(g), bool))
    # facades (planes y = +walls[0] left and y = -walls[1] right)
    for side, dist in ((1, walls[0]), (-1, walls[1])):
        n = 6000
        wx = rng.uniform(-40, 75, n)
        wz = rng.uniform(0.0, 6.0, n)
        wy = np.full(n, side * dist) + rng.normal(0, 0.03, n)
        p = np.stack([wx, wy, ground_z(wx, wy) + wz], 1)
        rr = np.linalg.norm(p[:, :2], axis=1)
        p = p[rng.random(n) < np.clip((12.0 / rr)**2, 0.02, 1.0)]
        parts.append(p)
        inten.append(np.clip(rng.normal(0.25, 0.05, len(p)), 0, 1))
        occl.append(np.ones(len(p), bool))
    # poles: vertical cylinders, sensor-facing half
    for (px, py, ph) in poles:
        d = np.hypot(px, py)
        n = int(np.clip(3000.0 / d**2, 6, 200))
        ang = np.arctan2(-py, -px) + rng.uniform(-np.pi / 2, np.pi / 2, n)
        p = np.stack([px + 0.15 * np.cos(ang), py + 0.15 * np.sin(ang),
                      ground_z(px, py) + rng.uniform(0, ph, n)], 1)
        parts.append(p)
        inten.append(np.clip(rng.normal(0.5, 0.05, n), 0, 1))
        occl.append(np.ones(n, bool))
    # objects
    for o in objs:
        length, h, w = o['dims']
        d = np.linalg.norm(o['lidar_box'][:2])
        n = int(np.clip(OBJECT_POINT_DENSITY * (length * h + w * h) / d**2,
                        *OBJECT_POINTS))
        p = C.sample_box_surface(o['corners'], eye, n, rng)
        if o['name'] == 'Cyclist':
            p = _cyclist_silhouette(p, o['lidar_box'])
        parts.append(p)
        inten.append(
            np.clip(rng.normal(CLASS_INTENSITY[o['name']], 0.05, len(p)), 0,
                    1))
        occl.append(np.ones(len(p), bool))
    # scattered clutter (vegetation / noise returns)
    n = 150
    p = np.stack([rng.uniform(-30, 70, n), rng.uniform(-25, 25, n),
                  rng.uniform(-1.7, 1.0, n)], 1)
    parts.append(p)
    inten.append(rng.uniform(0, 0.4, n))
    occl.append(np.zeros(n, bool))

    xyz = np.concatenate(parts, 0)
    it = np.concatenate(inten, 0)
    keep = C.occlude_by_zbuffer(xyz, np.concatenate(occl, 0))
    xyz, it = xyz[keep], it[keep]
    xyz, it = C.lidar_mode_filter(
        xyz, it, mode, rng, fog_style if mode == C.RARE_MODE else None)
    return np.concatenate([xyz, it[:, None]], 1).astype(np.float32)


# --------------------------------------------------------------------------
# Image rendering
# --------------------------------------------------------------------------
def _draw(img, depth, ids, poly_lidar, colour, depth_val, obj_id=-1):
    import cv2
    cam = C.clip_polygon_near(lidar_to_rect(poly_lidar), near=0.5)
    if len(cam) < 3:
        return
    uv = project_rect(cam)
    uv = np.clip(uv, -1e5, 1e5)
    pts = np.round(uv * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(img, [pts], colour, lineType=cv2.LINE_8, shift=4)
    cv2.fillPoly(depth, [pts], float(depth_val), shift=4)
    cv2.fillPoly(ids, [pts], int(obj_id), shift=4)


def _render_image(rng, objs, walls, poles, mode):
    """Render the CAM2 image (BGR uint8) and per-object visible pixels."""
    fy, cy = P2[1, 1], P2[1, 2]
    img = np.zeros((IMG_H, IMG_W, 3), np.float32)
    depth = np.full((IMG_H, IMG_W), 1e4, np.float32)
    ids = np.full((IMG_H, IMG_W), -1, np.int32)
    # horizon: image row of a far point straight ahead on the ground
    far = np.array([[1e4, 0.0, ground_z(1e4, 0.0)]])
    v_h = float(project_rect(lidar_to_rect(far))[0, 1])
    rows = np.arange(IMG_H, dtype=np.float32)[:, None]
    sky_t = np.clip(rows / max(v_h, 1.0), 0, 1)
    sky = (np.array([235, 200, 150], np.float32) * (1 - sky_t[..., None]) +
           np.array([250, 235, 215], np.float32) * sky_t[..., None])
    tex = rng.normal(0, 6.0, (IMG_H, IMG_W, 1)).astype(np.float32)
    ground = np.array([105, 105, 110], np.float32) + tex
    below = (rows > v_h)[..., None]
    img[:] = np.where(below, ground, sky + 0 * tex)
    gdepth = np.where(rows > v_h + 0.5,
                      fy * CAM_HEIGHT / np.maximum(rows - cy, 0.5), 1e4)
    depth[:] = np.broadcast_to(gdepth, (IMG_H, IMG_W))

    draws = []  # (depth key, polygon (lidar), colour, obj id)
    # lane markings (flat dashes on the ground)
    for ly in (-1.8, 1.8):
        for x0 in np.arange(3.0, 80.0, 9.0):
            xs = np.array([x0, x0 + 3.0, x0 + 3.0, x0])
            ys = np.array([ly - 0.08, ly - 0.08, ly + 0.08, ly + 0.08])
            poly = np.stack([xs, ys, ground_z(xs, ys) + 0.005], 1)
            draws.append((1e5 + x0, poly, (225, 225, 225), -1))
    # facades, split in 4 m cells with alternating shades (window columns)
    for side, dist, base in ((1, walls[0], (90, 110, 140)),
                             (-1, walls[1], (120, 120, 100))):
        for i, x0 in enumerate(np.arange(-4.0, 80.0, 4.0)):
            xs = np.array([x0, x0, x0 + 4, x0 + 4])
            ys = np.full(4, side * dist)
            zs = ground_z(xs, ys) + np.array([0, 6.0, 6.0, 0])
            poly = np.stack([xs, ys, zs], 1)
            shade = 1.0 if i % 2 == 0 else 0.75
            col = tuple(float(c * shade) for c in base)
            dkey = np.linalg.norm(poly.mean(0))
            draws.append((dkey, poly, col, -1))
    # poles: camera-facing rectangle
    for (px, py, ph) in poles:
        dirv = np.array([-py, px]) / np.hypot(px, py) * 0.15
        xs = np.array([px - dirv[0], px - dirv[0], px + dirv[0], px + dirv[0]])
        ys = np.array([py - dirv[1], py - dirv[1], py + dirv[1], py + dirv[1]])
        zs = ground_z(xs, ys) + np.array([0, ph, ph, 0])
        draws.append((np.hypot(px, py), np.stack([xs, ys, zs], 1),
                      (60, 60, 60), -1))
    # objects: visible faces, textured cells, simple directional shading
    eye = rect_to_lidar(np.zeros((1, 3)))[0]
    light = np.array([0.3, 0.5, 0.8])
    light /= np.linalg.norm(light)
    for k, o in enumerate(objs):
        base, pattern = C.CLASS_PAINT[o['name']]
        nu, nv = C.FACE_SUBDIV[pattern]
        corners = o['corners']
        centre = corners.mean(0)
        for face in C.visible_faces(corners, eye):
            quad = corners[face]
            normal = quad.mean(0) - centre
            normal /= np.linalg.norm(normal)
            shade = 0.55 + 0.45 * max(0.0, float(np.dot(normal, light)))
            is_top = face[0] == 1 and face[1] == 2
            # BOX_FACES order: a->b goes up (z) on the vertical faces
            for iu, iv, cell in C.face_cells(quad, nu, 1 if is_top else nv):
                col = C.cell_colour(base, pattern, iu, iv, nu,
                                    1 if is_top else nv, shade)
                dkey = np.linalg.norm(quad.mean(0)) + 1e-3 * k
                draws.append((dkey, cell, col, k))
    draws.sort(key=lambda d: -d[0])
    for dkey, poly, col, oid in draws:
        dval = dkey if dkey < 1e5 else np.linalg.norm(poly.mean(0))
        _draw(img, depth, ids, poly, col, dval, oid)
    out = C.apply_image_style(img, depth, mode, rng)
    visible = np.bincount(ids[ids >= 0].ravel(), minlength=len(objs))
    return out, visible


def _hull_area(corners):
    import cv2
    uv = project_rect(lidar_to_rect(corners)).astype(np.float32)
    hull = cv2.convexHull(uv)
    full = float(cv2.contourArea(hull))
    rect = np.array([[0, 0], [IMG_W, 0], [IMG_W, IMG_H], [0, IMG_H]],
                    np.float32)
    inter, _ = cv2.intersectConvexConvex(hull, rect)
    return full, float(inter)


def _label_lines(objs, visible):
    lines = []
    for k, o in enumerate(objs):
        full, inside = _hull_area(o['corners'])
        frac = visible[k] / max(inside, 1.0)
        occ = 0 if frac >= 0.8 else (1 if frac >= 0.4 else 2)
        trunc = float(np.clip(1.0 - inside / max(full, 1e-6), 0, 1))
        x, y, z = o['loc']
        alpha = o['ry'] - np.arctan2(x, z)
        alpha = (alpha + np.pi) % (2 * np.pi) - np.pi
        length, h, w = o['dims']
        x1, y1, x2, y2 = o['bbox']
        lines.append(
            f"{o['name']} {trunc:.2f} {occ:d} {alpha:.2f} "
            f'{x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} '
            f'{h:.2f} {w:.2f} {length:.2f} {x:.2f} {y:.2f} {z:.2f} '
            f'{o["ry"]:.2f}')
    return ''.join(line + '\n' for line in lines)


def _scene_layout(rng):
    walls = (float(rng.uniform(12.0, 19.0)), float(rng.uniform(12.0, 19.0)))
    poles = []
    for _ in range(int(rng.integers(3, 8))):
        side = rng.choice([-1, 1])
        dist = walls[0] if side > 0 else walls[1]
        poles.append((float(rng.uniform(-20, 70)), float(side * (dist - 1.2)),
                      float(rng.uniform(3.0, 5.5))))
    return walls, poles


def _write_frame(split_dir, idx, rng, mode, forced=(), with_label=True,
                 fog_style=None):
    import cv2
    walls, poles = _scene_layout(rng)
    # testing frames contain objects too, only their labels are withheld
    objs = _sample_objects(rng, walls, forced)
    points = _make_points(rng, objs, walls, poles, mode, fog_style)
    img, visible = _render_image(rng, objs, walls, poles, mode)
    name = f'{idx:06d}'
    points.tofile(osp.join(split_dir, 'velodyne', name + '.bin'))
    if not cv2.imwrite(osp.join(split_dir, 'image_2', name + '.png'), img):
        raise IOError(f'could not write image {name}.png in {split_dir}')
    with open(osp.join(split_dir, 'calib', name + '.txt'), 'w') as f:
        f.write(calib_text())
    with open(osp.join(split_dir, 'planes', name + '.txt'), 'w') as f:
        f.write(plane_text())
    if with_label:
        with open(osp.join(split_dir, 'label_2', name + '.txt'), 'w') as f:
            f.write(_label_lines(objs, visible))
    return objs, len(points), float(img.mean())


def _run_converters(build, progress):
    kc = C.load_converter('kitti_converter')
    up = C.load_converter('update_infos_to_v2')
    gt = C.load_converter('create_gt_database')
    # v1 infos go to a scratch dir outside the output tree: update_pkl_infos
    # sleeps 5 s per file when it believes it overwrites its input.
    v1 = tempfile.mkdtemp(prefix='tiny_kitti_v1_')
    try:
        with C.quiet_stdout(not progress):
            kc.create_kitti_info_file(build, 'kitti', with_plane=True,
                                      save_path=v1, relative_path=True)
            paths = {s: osp.join(v1, f'kitti_infos_{s}.pkl')
                     for s in ('train', 'val', 'trainval', 'test')}
            kc.create_reduced_point_cloud(
                build, 'kitti', train_info_path=paths['train'],
                val_info_path=paths['val'], test_info_path=paths['test'])
            for s in ('train', 'val', 'trainval', 'test'):
                up.update_pkl_infos('kitti', out_dir=build,
                                    pkl_path=paths[s])
            gt.create_groundtruth_database(
                'KittiDataset', build, 'kitti', 'kitti_infos_train.pkl',
                relative_path=False, mask_anno_path='instances_train.json',
                with_mask=False)
    finally:
        shutil.rmtree(v1, ignore_errors=True)


def create_tiny_kitti(root, num_frames=64, seed=0, val_fraction=0.25,
                      overwrite=False, progress=False, rare_fraction=None,
                      val_rare_fraction=None, train_rare_factor=1,
                      fog_style=None):
    """Write a synthetic tiny KITTI dataset (mmdet3d v2 infos) under ``root``.

    Args:
        root (str): output directory (must not exist or be empty, unless
            ``overwrite``).
        num_frames (int): number of training+validation frames (>= 16).
        seed (int): random seed; the same seed gives byte-identical files.
        val_fraction (float): fraction of frames in the val split.
        overwrite (bool): replace an existing non-empty ``root``.
        progress (bool): show progress bars and the converters' output.
        rare_fraction (float, optional): share of rare-mode ('fog') frames
            in the train split; with ``val_rare_fraction`` (its share in the
            val split). Default: 8 % of all frames, split proportionally.
        val_rare_fraction (float, optional): see ``rare_fraction``.
        train_rare_factor (int): the positive control: the train split gets
            this many times the rare frames of ``rare_fraction`` (new frames
            in place of day / dusk ones, same number of train frames); the
            val split is byte-identical to the one of factor 1. Needs
            ``rare_fraction``.
        fog_style (dict, optional): the rare mode's LiDAR, changed from
            ``LIDAR_STYLE['fog']``: ``att`` (attenuation length, m; a
            point at range r is kept with probability keep * exp(-r / att)),
            ``inten`` (intensity scale), ``scatter`` (near-range scatter
            returns a frame). Recorded in ``frame_modes.json``
            (``rare_lidar_style``).

    Returns:
        dict: paths (``root``, ``info_train``, ``info_val``, ``info_trainval``,
        ``info_test``, ``dbinfos``, ``gt_database``, ``frame_modes``) and a
        ``summary`` (frames per split, objects per class, frames per mode).
    """
    num_frames = _check_int('num_frames', num_frames, C.MIN_FRAMES)
    seed = _check_int('seed', seed, 0)
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f'val_fraction must be in (0, 1), got '
                         f'{val_fraction!r}; e.g. use 0.25')
    C.check_rare_fractions(rare_fraction, val_rare_fraction)
    C.check_train_rare_factor(train_rare_factor, rare_fraction)
    fog = C.fog_lidar_style(fog_style)
    root = C.check_output_root(root, overwrite)
    t0 = time.time()
    rng = np.random.default_rng([seed, 1])
    n_val = max(1, int(round(val_fraction * num_frames)))
    perm = rng.permutation(num_frames)
    val_ids = sorted(int(i) for i in perm[:n_val])
    train_ids = sorted(int(i) for i in perm[n_val:])
    modes = C.assign_modes(train_ids, val_ids, rng, rare_fraction,
                           val_rare_fraction, train_rare_factor)
    # guarantee every class in train: force one of each in the first frames
    forced = {train_ids[0]: ('Car', 'Pedestrian', 'Cyclist')}

    build = C.make_build_dir(root)
    try:
        for split, sub in (('training', ('velodyne', 'image_2', 'calib',
                                         'label_2', 'planes')),
                           ('testing', ('velodyne', 'image_2', 'calib',
                                        'planes'))):
            for s in sub:
                os.makedirs(osp.join(build, split, s))
        os.makedirs(osp.join(build, 'ImageSets'))
        for name, ids in (('train', train_ids), ('val', val_ids),
                          ('test', list(range(NUM_TEST_FRAMES)))):
            with open(osp.join(build, 'ImageSets', name + '.txt'), 'w') as f:
                f.write(''.join(f'{i:06d}\n' for i in ids))

        class_counts = {c: {'train': 0, 'val': 0} for c in CLASSES}
        stats = {}
        frames = range(num_frames)
        if progress:
            import mmengine
            print(f'Writing {num_frames} synthetic KITTI frames ...')
            frames = mmengine.track_iter_progress(list(frames))
        split_of = {i: 'val' for i in val_ids}
        split_of.update({i: 'train' for i in train_ids})
        for idx in frames:
            frng = np.random.default_rng([seed, 2, idx])
            objs, npts, bright = _write_frame(
                osp.join(build, 'training'), idx, frng, modes[idx],
                forced.get(idx, ()), fog_style=fog)
            for o in objs:
                class_counts[o['name']][split_of[idx]] += 1
            stats[idx] = dict(points=npts, brightness=bright)
        for idx in range(NUM_TEST_FRAMES):
            frng = np.random.default_rng([seed, 3, idx])
            _write_frame(osp.join(build, 'testing'), idx, frng, 'day',
                         with_label=False)
        t_raw = time.time() - t0

        _run_converters(build, progress)

        C.write_json(osp.join(build, 'frame_modes.json'), {
            'dataset': 'kitti',
            'rare_mode': C.RARE_MODE,
            'rare_lidar_style': fog,
            'modes': {str(i): modes[i] for i in range(num_frames)},
            'split': {str(i): split_of[i] for i in range(num_frames)},
        })
        C.commit_build_dir(build, root)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    summary = C.dataset_summary(
        'kitti', {'train': len(train_ids), 'val': len(val_ids),
                  'test': NUM_TEST_FRAMES}, class_counts, modes, t_raw, t0)
    return dict(
        root=root,
        info_train=osp.join(root, 'kitti_infos_train.pkl'),
        info_val=osp.join(root, 'kitti_infos_val.pkl'),
        info_trainval=osp.join(root, 'kitti_infos_trainval.pkl'),
        info_test=osp.join(root, 'kitti_infos_test.pkl'),
        dbinfos=osp.join(root, 'kitti_dbinfos_train.pkl'),
        gt_database=osp.join(root, 'kitti_gt_database'),
        frame_modes=osp.join(root, 'frame_modes.json'),
        summary=summary)


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f'{name} must be an int, got {value!r}')
    if value < minimum:
        raise ValueError(f'{name} must be >= {minimum}, got {value}')
    return int(value)
