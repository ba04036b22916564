"""Write a slice file of nuScenes samples from their scene descriptions:
'night' and 'rain' (a word starting with them, case-insensitive) and 'day'
(not night), the way nuScenes users slice.

    python tools/nuscenes_slices.py DATA_ROOT --version v1.0-trainval \\
        --out data/nuscenes/scene_slices.json [--words night rain] \\
        [--no-day] [--overwrite]

Use the file in a SliceMetric config (docs/slices.md):
    slices=[dict(type='SliceFile', path='data/nuscenes/scene_slices.json')]
(or derive the slices at evaluation time with SceneDescriptionSlices).
"""
import argparse
import sys

from mmdet3d_equity.apis.errors import one_line_errors


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='nuScenes night/rain/day slice '
                                'file from scene descriptions')
    p.add_argument('data_root', help='nuScenes root holding <version>/')
    p.add_argument('--version', default='v1.0-trainval',
                   help='table version (v1.0-trainval, v1.0-mini, ...)')
    p.add_argument('--out', required=True, help='slice file (.json)')
    p.add_argument('--words', nargs='+', default=['night', 'rain'],
                   help='description words, one slice each')
    p.add_argument('--no-day', action='store_true',
                   help="no 'day' (= not night) slice")
    p.add_argument('--overwrite', action='store_true')
    return p.parse_args(argv)


@one_line_errors('nuscenes_slices.py')
def main(argv=None):
    args = parse_args(argv)
    from mmdet3d_equity.evaluation.slice_sources import (
        SliceError,
        write_scene_description_slice_file,
    )
    from mmdet3d_equity.utils.fileio import OutputError
    try:
        counts = write_scene_description_slice_file(
            args.data_root, args.version, args.out, words=args.words,
            day=not args.no_day, overwrite=args.overwrite)
    except (SliceError, OutputError) as e:
        print(f'nuscenes_slices.py: error: {e}', file=sys.stderr)
        return 2
    print(f'slice file written: {args.out}')
    for name, n in counts.items():
        print(f'  {name}: {n} samples')
    return 0


if __name__ == '__main__':
    sys.exit(main())
