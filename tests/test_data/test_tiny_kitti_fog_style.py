"""Tiny KITTI generator: the fog LiDAR style (``fog_style``), which the
efficacy study's testbed sets (docs/testbed.md)."""
import hashlib
import json
import os.path as osp

import numpy as np
import pytest

SMALL = dict(num_frames=16, seed=3, val_fraction=0.5, rare_fraction=0.25,
             val_rare_fraction=0.5)


def _md5(path):
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


def test_fog_lidar_style_merges_and_validates():
    from equity_tiny_data._common import LIDAR_STYLE, fog_lidar_style
    assert fog_lidar_style() == LIDAR_STYLE['fog']
    assert fog_lidar_style(None) is not LIDAR_STYLE['fog']  # a copy
    s = fog_lidar_style(dict(att=14, scatter=1400))
    assert s == dict(LIDAR_STYLE['fog'], att=14.0, scatter=1400)
    assert LIDAR_STYLE['fog']['att'] == 22.0  # the default is untouched
    for bad, msg in ((dict(att=0), r'att .* must be a number > 0'),
                     (dict(inten=1.5), r'inten .* must be in \(0, 1\]'),
                     (dict(scatter=-1), r'scatter .* must be an int >= 0'),
                     (dict(scatter=2.5), r'scatter .* must be an int >= 0'),
                     (dict(keep=0.5), r"unknown fog_style keys \['keep'\]")):
        with pytest.raises(ValueError, match=msg):
            fog_lidar_style(bad)
    with pytest.raises(TypeError, match='fog_style must be a dict'):
        fog_lidar_style(14)


def test_lidar_mode_filter_follows_the_style():
    """Against an independent computation with the same random stream:
    keep with probability keep * exp(-r / att), intensity scaled, range
    noise, then ``scatter`` dim returns within 7 m, below the sensor."""
    from equity_tiny_data._common import fog_lidar_style, lidar_mode_filter
    style = fog_lidar_style(dict(att=10.0, inten=0.2, scatter=50))
    xyz = np.random.default_rng(0).uniform(-30, 30, (2000, 3))
    inten = np.full(2000, 0.8)
    out_xyz, out_i = lidar_mode_filter(xyz, inten, 'fog',
                                       np.random.default_rng(7), style)
    rng = np.random.default_rng(7)
    r = np.linalg.norm(xyz, axis=1)
    keep = rng.random(2000) < 0.75 * np.exp(-r / 10.0)
    n = int(keep.sum())
    want = xyz[keep] + rng.normal(0, style['noise'], (n, 3))
    assert len(out_xyz) == n + 50
    np.testing.assert_allclose(out_xyz[:n], want)
    np.testing.assert_allclose(out_i[:n], 0.8 * 0.2)
    rr = np.linalg.norm(out_xyz[n:], axis=1)
    assert rr.max() <= 7.0 + 1e-9 and (out_xyz[n:, 2] <= 0).all()
    assert (out_i[n:] <= 0.08).all()
    # no style: the mode's default
    a = lidar_mode_filter(xyz, inten, 'fog', np.random.default_rng(7))
    b = lidar_mode_filter(xyz, inten, 'fog', np.random.default_rng(7),
                          fog_lidar_style())
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.slow
def test_fog_style_changes_only_the_fog_frames(tmp_path):
    """Day and dusk frames are byte-identical to the default style's, fog
    frames differ (fewer returns with a shorter attenuation length), and
    frame_modes.json records the style."""
    from equity_tiny_data import create_tiny_kitti
    from equity_tiny_data._common import fog_lidar_style
    a = create_tiny_kitti(str(tmp_path / 'a'), **SMALL)
    b = create_tiny_kitti(str(tmp_path / 'b'),
                          fog_style=dict(att=8.0, inten=0.2), **SMALL)
    with open(a['frame_modes']) as f:
        ma = json.load(f)
    with open(b['frame_modes']) as f:
        mb = json.load(f)
    assert ma['modes'] == mb['modes'] and ma['split'] == mb['split']
    assert ma['rare_lidar_style'] == fog_lidar_style()
    assert mb['rare_lidar_style'] == fog_lidar_style(dict(att=8.0,
                                                          inten=0.2))
    fog = [k for k, m in ma['modes'].items() if m == 'fog']
    assert fog
    for k, m in ma['modes'].items():
        name = osp.join('training', 'velodyne', f'{int(k):06d}.bin')
        pa = np.fromfile(osp.join(a['root'], name), np.float32)
        pb = np.fromfile(osp.join(b['root'], name), np.float32)
        if m == 'fog':
            assert len(pb) < len(pa), k
        else:
            assert _md5(osp.join(a['root'], name)) == \
                _md5(osp.join(b['root'], name)), k
    with pytest.raises(ValueError, match='att .* must be a number > 0'):
        create_tiny_kitti(str(tmp_path / 'c'), fog_style=dict(att=-1),
                          **SMALL)
    assert not osp.exists(tmp_path / 'c')
