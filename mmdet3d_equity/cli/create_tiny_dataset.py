"""Write a small synthetic KITTI or nuScenes dataset in the real layout.

    python tools/create_tiny_dataset.py kitti --out data/tiny_kitti \
        [--frames 64] [--seed 0] [--overwrite]
    python tools/create_tiny_dataset.py kitti --out data/tiny_kitti_study \
        --frames 192 --val-fraction 0.333 --rare-fraction 0.06 \
        --val-rare-fraction 0.5      # rare in train, enriched in val
    python tools/create_tiny_dataset.py nuscenes --out data/tiny_nus \
        [--frames 40] [--seed 0] [--overwrite]

The output loads unchanged with mmdet3d's KittiDataset / NuScenesDataset
(v2 info files made by mmdet3d's own converters).  The per-frame appearance
modes (with the rare mode) are in <out>/frame_modes.json.  From Python:
``equity_tiny_data.create_tiny_kitti`` / ``create_tiny_nuscenes``.
"""
import argparse
import contextlib
import os
import os.path as osp
import sys

from mmdet3d_equity.apis.errors import one_line_errors

MIN_FRAMES = 16
DEFAULT_FRAMES = {'kitti': 64, 'nuscenes': 40}


def _frames(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'must be an integer number of frames, got {text!r} '
            f'(e.g. --frames 64)')
    if value < MIN_FRAMES:
        raise argparse.ArgumentTypeError(
            f'must be >= {MIN_FRAMES} (needed to plant the class imbalance '
            f'and the rare mode), got {value}; use e.g. --frames 64')
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'must be a non-negative integer, got {text!r} (e.g. --seed 0)')
    if value < 0:
        raise argparse.ArgumentTypeError(
            f'must be a non-negative integer, got {value} (e.g. --seed 0)')
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'must be a number in [0, 1), got {text!r} (e.g. 0.25)')
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f'must be a number in [0, 1), got {value}')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Create a synthetic tiny KITTI / nuScenes dataset')
    parser.add_argument('dataset', choices=['kitti', 'nuscenes'],
                        help='which layout to write')
    parser.add_argument('--out', required=True,
                        help='output directory (created; must be empty '
                        'unless --overwrite)')
    parser.add_argument('--frames', type=_frames, default=None,
                        help='number of frames / samples (>= 16; default: '
                        '64 for kitti, 40 for nuscenes)')
    parser.add_argument('--seed', type=_seed, default=0,
                        help='random seed (same seed => identical files)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing non-empty output dir')
    parser.add_argument('--val-fraction', type=_fraction, default=0.25,
                        help='kitti: share of frames in the val split '
                        '(default 0.25)')
    parser.add_argument('--rare-fraction', type=_fraction, default=None,
                        help='kitti: share of rare-mode (fog) frames in the '
                        'train split; needs --val-rare-fraction (default: '
                        '8%% of all frames, split proportionally)')
    parser.add_argument('--val-rare-fraction', type=_fraction, default=None,
                        help='kitti: share of rare-mode frames in the val '
                        'split (e.g. 0.5 to measure the rare slice)')
    parser.add_argument('--fog-attenuation', type=float, default=None,
                        metavar='M', help='kitti: the fog LiDAR\'s '
                        'attenuation length in m (a return at range r is '
                        'kept with probability 0.75 exp(-r / M); default 22)')
    parser.add_argument('--fog-intensity', type=float, default=None,
                        metavar='S', help='kitti: the fog LiDAR\'s '
                        'intensity scale in (0, 1] (default 0.45)')
    parser.add_argument('--fog-scatter', type=int, default=None,
                        metavar='N', help='kitti: near-range fog scatter '
                        'returns a frame (default 700)')
    parser.add_argument('--quiet', action='store_true',
                        help='no progress bars')
    args = parser.parse_args(argv)
    out = osp.abspath(osp.expanduser(args.out))
    if osp.exists(out) and not osp.isdir(out):
        parser.error(f'--out {args.out!r} is an existing file, not a '
                     'directory; choose a directory path')
    if osp.isdir(out) and os.listdir(out) and not args.overwrite:
        parser.error(f'--out {args.out!r} exists and is not empty; add '
                     '--overwrite to replace it or choose another directory')
    if args.frames is None:
        args.frames = DEFAULT_FRAMES[args.dataset]
    if (args.rare_fraction is None) != (args.val_rare_fraction is None):
        parser.error('give both --rare-fraction and --val-rare-fraction, or '
                     'neither')
    if args.dataset == 'nuscenes' and (
            args.rare_fraction is not None or args.val_fraction != 0.25):
        parser.error('--val-fraction/--rare-fraction/--val-rare-fraction '
                     'apply to kitti only (nuScenes splits follow '
                     'v1.0-mini)')
    from equity_tiny_data._common import FOG_STYLE_FLAGS, fog_lidar_style
    fog = {k: getattr(args, flag[2:].replace('-', '_'))
           for k, flag in FOG_STYLE_FLAGS.items()}
    args.fog_style = {k: v for k, v in fog.items() if v is not None}
    if args.dataset == 'nuscenes' and args.fog_style:
        parser.error('/'.join(FOG_STYLE_FLAGS.values()) +
                     ' apply to kitti only')
    try:
        fog_lidar_style(args.fog_style, names=FOG_STYLE_FLAGS)
    except ValueError as e:
        parser.error(str(e))
    if args.val_fraction == 0.0:
        parser.error('--val-fraction must be > 0')
    args.out = out
    return args


def print_summary(result):
    s = result['summary']
    print(f"\n{s['dataset']} tiny dataset written to {result['root']}")
    print('frames per split: ' +
          ', '.join(f'{k}={v}' for k, v in s['frames'].items()))
    print('objects per class (train/val):')
    for name, c in s['objects'].items():
        print(f"  {name:12s} {c['train']:6d} {c['val']:6d}")
    print('frames per mode: ' +
          ', '.join(f'{k}={v}' for k, v in s['modes'].items()) +
          f"  (rare mode: {s['rare_mode']})")
    print(f"time: {s['seconds']['total']:.1f} s")


@contextlib.contextmanager
def stdout_silenced(enabled: bool = True):
    """Within the block, nothing reaches the standard output (file
    descriptor 1): also not the progress bars of mmengine (bound to the
    stdout object when mmengine is imported) and of the MMDetection3D
    converters the generators call. Errors still go to stderr."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 1)
            try:
                yield
            finally:
                sys.stdout.flush()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@one_line_errors('create_tiny_dataset.py')
def main(argv=None):
    args = parse_args(argv)
    from equity_tiny_data import create_tiny_kitti, create_tiny_nuscenes
    create = dict(kitti=create_tiny_kitti, nuscenes=create_tiny_nuscenes)
    size = dict(kitti='num_frames', nuscenes='num_samples')[args.dataset]
    extra = {} if args.dataset == 'nuscenes' else dict(
        val_fraction=args.val_fraction, rare_fraction=args.rare_fraction,
        val_rare_fraction=args.val_rare_fraction,
        fog_style=args.fog_style or None)
    with stdout_silenced(args.quiet):
        result = create[args.dataset](args.out, seed=args.seed,
                                      overwrite=args.overwrite,
                                      progress=not args.quiet,
                                      **{size: args.frames}, **extra)
    print_summary(result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
