"""Per-class semantic scale of a training split under a trained detector.

    python tools/semantic_scale.py CONFIG CHECKPOINT [--out-dir DIR]
        [--max-samples N] [--alpha A] [--min-count K] [--sampling MODE]
        [--level L] [--l2-normalize] [--eval-results FILE] [--ap-key REGEX]
        [--metric M] [--curve-repeats R] [--keep-augmentation] [--overwrite]
        [--cfg-options k=v ...]

Writes semantic_scale.json, count_vs_scale.png and marginal_effect.png to
DIR (default work_dirs/semantic_scale/<config name>); what they hold:
:mod:`mmdet3d_equity.analysis.semantic_scale` (``measure_semantic_scale``, the
same thing from Python). The checkpoint must match the config exactly;
existing outputs are kept unless --overwrite.
"""
import argparse
import sys

from mmengine.config import DictAction

from mmdet3d_equity.apis.errors import one_line_errors


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Per-class semantic scale of a training split')
    p.add_argument('config', help='detector config')
    p.add_argument('checkpoint', help='trained checkpoint (.pth)')
    p.add_argument('--out-dir', help='output directory (default '
                   'work_dirs/semantic_scale/<config name>)')
    p.add_argument('--max-samples', type=int, default=None,
                   help='use at most N training samples (the first N)')
    p.add_argument('--alpha', type=float, default=2.0,
                   help='inter-class term alpha >= 1 (2: long-tailed data, '
                   '1: balanced)')
    p.add_argument('--min-count', type=int, default=2,
                   help='classes with fewer objects are unmeasured')
    p.add_argument('--sampling', choices=['bilinear', 'nearest'],
                   default='bilinear')
    p.add_argument('--level', type=int, default=0,
                   help='BEV heads: head input level')
    p.add_argument('--l2-normalize', action='store_true',
                   help='L2-normalise object features')
    p.add_argument('--eval-results', help='per-class AP file (JSON {class: '
                   'AP} or the metrics JSON of tools/test.py)')
    p.add_argument('--ap-key', help='regular expression with {cls} that '
                   'selects the per-class AP keys of --eval-results (any '
                   'flat JSON)')
    p.add_argument('--metric', help='which AP of a tools/test.py metrics '
                   'JSON: KITTI <3D|BEV|2D>_AP<11|40>_<easy|moderate|hard>_'
                   '<strict|loose> (default 3D_AP40_moderate_strict), '
                   'nuScenes AP or AP_dist_<d> (default AP: mean over the '
                   'distances)')
    p.add_argument('--curve-repeats', type=int, default=3,
                   help='random subsets per size of the marginal curves')
    p.add_argument('--keep-augmentation', action='store_true',
                   help='keep the random augmentations of the train pipeline')
    p.add_argument('--overwrite', action='store_true',
                   help='replace existing outputs')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    args = p.parse_args(argv)
    from mmdet3d_equity.analysis.semantic_scale import (
        SemanticScaleError,
        check_parameters,
    )
    try:
        check_parameters(args.max_samples, args.alpha, args.min_count,
                         args.sampling, args.level, args.curve_repeats)
    except SemanticScaleError as e:
        p.error(str(e))
    return args


@one_line_errors('semantic_scale.py')
def main(argv=None):
    args = parse_args(argv)
    from mmdet3d_equity.analysis.semantic_scale import measure_semantic_scale
    from mmdet3d_equity.apis.errors import TOOL_ERRORS, report_error
    from mmdet3d_equity.semantic_scale.features import UnsupportedDetectorError
    try:
        return measure_semantic_scale(
            args.config, args.checkpoint, args.out_dir,
            max_samples=args.max_samples, alpha=args.alpha,
            min_count=args.min_count, sampling=args.sampling,
            level=args.level, l2_normalize=args.l2_normalize,
            eval_results=args.eval_results, ap_key=args.ap_key,
            metric=args.metric,
            curve_repeats=args.curve_repeats,
            keep_augmentation=args.keep_augmentation,
            overwrite=args.overwrite, cfg_options=args.cfg_options)
    except TOOL_ERRORS + (UnsupportedDetectorError, ) as e:
        sys.exit(report_error('semantic_scale.py', e))


if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
