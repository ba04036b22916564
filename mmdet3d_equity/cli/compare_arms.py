"""Benchmark a baseline against method arms over several seeds.

    # arms on the command line (configs are trained + tested per seed;
    # directories hold existing per-seed results <dir>/seed<k>/)
    python tools/compare_arms.py --baseline CFG_OR_DIR \
        --arm NAME=CFG_OR_DIR [--arm NAME=CFG_OR_DIR ...] --seeds 0 1 2 \
        [--metric M] [--cfg-options k=v ...] [--train-slices FILE] \
        [--work-dir DIR] [--out-dir DIR] [--jobs N] [--rerun] [--overwrite]

    # or a spec file (arms with their own cfg_options, env, primary rows)
    python tools/compare_arms.py \
        --spec configs/benchmarks/tiny-kitti_baseline-vs-gfl.py [--seeds ...]

Checks every arm before training anything, trains and tests each (arm, seed)
without a finished run (finished runs are reused: an interrupted benchmark
resumes), and writes report.md, summary.csv, runs.csv, benchmark.json and
plots to --out-dir (default WORK_DIR/report). See docs/benchmark.md.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from mmdet3d_equity.apis.errors import one_line_errors


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Multi-seed benchmark of a baseline against method arms')
    p.add_argument('--spec', help='benchmark spec file (.py), see '
                   'docs/benchmark.md')
    p.add_argument('--baseline', help='baseline config, or a directory of '
                   'per-seed results (<dir>/seed<k>/)')
    p.add_argument('--arm', action='append', default=[], metavar='NAME=PATH',
                   help='a method arm: NAME=CONFIG or NAME=RESULTS_DIR '
                   '(repeat for more arms)')
    p.add_argument('--seeds', type=int, nargs='+',
                   help='seeds (randomness.seed); each (arm, seed) is one '
                   'run; default: the spec\'s, or the seeds the results '
                   'directories share')
    p.add_argument('--metric', help='KITTI: <3D|BEV|2D>_AP<11|40>_<easy|'
                   'moderate|hard>_<strict|loose> (default '
                   '3D_AP40_moderate_strict); nuScenes: AP (default) or '
                   'AP_dist_<d>')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='options for every config arm (key=value)')
    p.add_argument('--train-slices', help='slice file of the training '
                   'split for the sample-weight diagnostics (e.g. the tiny '
                   "datasets' frame_modes.json)")
    p.add_argument('--work-dir', help='where runs go: WORK_DIR/<arm>/'
                   'seed<k>/ (default: the spec\'s work_dir, else '
                   'work_dirs/benchmark)')
    p.add_argument('--out-dir', help='report folder (default WORK_DIR/'
                   'report)')
    p.add_argument('--jobs', type=int, default=1,
                   help='runs at a time (each gets cores/jobs threads); '
                   'default 1')
    p.add_argument('--rerun', action='store_true',
                   help='delete and redo runs that exist in the work dir')
    p.add_argument('--overwrite', action='store_true',
                   help='replace an existing report in --out-dir')
    p.add_argument('--no-plots', action='store_true', help='skip the PNGs')
    args = p.parse_args(argv)
    if args.spec and (args.baseline or args.arm):
        p.error('give --spec, or --baseline and --arm, not both')
    if not args.spec and not (args.baseline and args.arm):
        p.error('give --spec FILE, or --baseline CFG_OR_DIR and at least one '
                '--arm NAME=CFG_OR_DIR')
    if args.jobs < 1:
        p.error('--jobs must be >= 1')
    return args


def build_spec(args):
    from mmdet3d_equity.benchmark import (
        load_spec_file,
        make_arm,
        parse_arm_arg,
    )
    from mmdet3d_equity.benchmark.spec import Spec, validate_spec
    if args.spec:
        spec = load_spec_file(args.spec)
    else:
        spec = Spec(baseline=make_arm('baseline', args.baseline),
                    arms=[parse_arm_arg(a) for a in args.arm])
    if args.seeds is not None:
        spec.seeds = list(args.seeds)
    if args.metric:
        spec.metric = args.metric
    if args.cfg_options:
        spec.cfg_options.update(args.cfg_options)
    if args.train_slices:
        spec.train_slices = args.train_slices
    validate_spec(spec)
    return spec


@one_line_errors('compare_arms.py')
def main(argv=None):
    args = parse_args(argv)
    from mmdet3d_equity.apis.errors import TOOL_ERRORS, report_error
    from mmdet3d_equity.benchmark import run_benchmark
    try:
        spec = build_spec(args)
        work_dir = args.work_dir or spec.work_dir or osp.join(
            'work_dirs', 'benchmark')
        out_dir = args.out_dir or osp.join(work_dir, 'report')
        result = run_benchmark(spec, work_dir, out_dir, jobs=args.jobs,
                               rerun=args.rerun, overwrite=args.overwrite,
                               plots=not args.no_plots)
    except TOOL_ERRORS as e:
        sys.exit(report_error('compare_arms.py', e))
    print(open(result['files']['report.md']).read())
    print('[benchmark] wrote ' + ', '.join(result['files'].values()))
    return result


if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
