"""Rewrite a likelihood file in the current format (``.npz``, no pickle).

    python tools/convert_likelihoods.py OLD.pkl NEW.npz --allow-pickle
        [--overwrite]

Likelihood files written by earlier versions are pickles, and loading a
pickle can run arbitrary code: convert only files you trust. The new file
loads with ``numpy.load(allow_pickle=False)`` and carries a content
fingerprint. From Python: ``mmdet3d_equity.scoring.convert_likelihood_file``.
"""
import argparse
import sys



def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Convert a likelihood file to the current .npz format')
    p.add_argument('src', help='likelihood file to read (e.g. an old .pkl)')
    p.add_argument('dst', help='the .npz file to write')
    p.add_argument('--allow-pickle', action='store_true',
                   help='read a legacy pickle (only for files you trust: '
                   'unpickling can run code)')
    p.add_argument('--overwrite', action='store_true',
                   help='replace an existing DST')
    args = p.parse_args(argv)
    if not args.dst.endswith('.npz'):
        p.error(f'DST must end with .npz, got {args.dst!r}')
    return args


def main(argv=None):
    args = parse_args(argv)
    from mmdet3d_equity.apis.errors import TOOL_ERRORS, report_error
    from mmdet3d_equity.utils.likelihood_file import \
        convert_likelihood_file
    try:
        rec = convert_likelihood_file(args.src, args.dst,
                                      allow_pickle=args.allow_pickle,
                                      overwrite=args.overwrite)
    except TOOL_ERRORS as e:
        return report_error('convert_likelihoods', e)
    print(f'{args.dst}: {len(rec["sample_ids"])} samples, content '
          f'fingerprint {rec["content_fingerprint"][:16]}...')
    return 0


if __name__ == '__main__':
    sys.exit(main())
