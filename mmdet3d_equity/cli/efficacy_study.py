"""Run the efficacy study of DatasetEquity on tiny KITTI and write its report.

    python tools/efficacy_study.py [--reduced] [--jobs 2] [--overwrite]
        [--data-root data/tiny_kitti_study] [--work-dir work_dirs/efficacy]
        [--doc docs/efficacy.md] [--arms gfl ssb ...]
        [--select-seeds 0 1 2] [--confirm-seeds 3 4]

Generates the study's dataset (rare 'fog' in train, enriched in val),
scores it, trains and tests the baseline and every method arm over the
selection seeds, chooses the best deployable arm by a fixed rule, confirms
it on other seeds, and writes the report (docs/efficacy.md). Finished runs
are reused, so an interrupted study resumes. ``--reduced`` runs the same
steps at a toy size in minutes (its own data root, work dir and report,
default under work_dirs/efficacy_reduced/). ``--arms`` runs a subset of
the arms (the baseline always runs; the report lists the arms left out) and
``--select-seeds`` / ``--confirm-seeds`` replace the size's seeds. See
:mod:`mmdet3d_equity.studies.efficacy.study`.
"""
import argparse
import os.path as osp
import sys

from mmdet3d_equity.apis.errors import one_line_errors


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='DatasetEquity efficacy study '
                                'on tiny KITTI')
    p.add_argument('--reduced', action='store_true',
                   help='the same steps at a toy size (minutes)')
    p.add_argument('--data-root', help='study dataset (created if missing)')
    p.add_argument('--work-dir', help='runs and benchmark reports')
    p.add_argument('--doc', help='the report to write')
    p.add_argument('--jobs', type=int, default=2,
                   help='trainings at a time (each with cores/jobs threads)')
    p.add_argument('--overwrite', action='store_true',
                   help='replace an existing report (runs are reused)')
    p.add_argument('--arms', nargs='+', metavar='ARM',
                   help='run only these method arms (default: every arm '
                   'of the size; the baseline always runs)')
    p.add_argument('--select-seeds', nargs='+', type=int, metavar='SEED',
                   help="the selection phase's seeds (default: the size's)")
    p.add_argument('--confirm-seeds', nargs='+', type=int, metavar='SEED',
                   help="the confirmation phase's seeds (default: the "
                   "size's)")
    args = p.parse_args(argv)
    base = 'efficacy_reduced' if args.reduced else 'efficacy'
    args.data_root = args.data_root or osp.join(
        'data', 'tiny_kitti_study_reduced' if args.reduced else
        'tiny_kitti_study')
    args.work_dir = args.work_dir or osp.join('work_dirs', base)
    args.doc = args.doc or (osp.join(args.work_dir, 'efficacy.md')
                            if args.reduced else osp.join('docs',
                                                          'efficacy.md'))
    if args.jobs < 1:
        p.error('--jobs must be >= 1')
    from mmdet3d_equity.studies.efficacy.study import (
        CLI_SIZE_FLAGS,
        FULL,
        REDUCED,
        arm_names,
    )
    size = dict(REDUCED if args.reduced else FULL)
    for key in CLI_SIZE_FLAGS:
        if getattr(args, key) is not None:
            size[key] = list(getattr(args, key))
    try:
        arm_names(size)
    except ValueError as e:
        p.error(f'--arms: {e}')
    both = set(size['select_seeds']) & set(size['confirm_seeds'])
    if both:
        p.error(f'seeds {sorted(both)} are both selection and confirmation '
                'seeds: the confirmation phase needs seeds that did not '
                'choose the arm')
    args.size = size
    return args


@one_line_errors('efficacy_study.py')
def main(argv=None):
    args = parse_args(argv)
    from mmdet3d_equity.apis.errors import TOOL_ERRORS, report_error
    from mmdet3d_equity.evaluation.results import ResultsError
    from mmdet3d_equity.studies.efficacy.study import (
        StudyDataError,
        run_study,
    )
    try:
        return run_study(osp.abspath(args.data_root),
                         osp.abspath(args.work_dir), args.doc, args.size,
                         jobs=args.jobs, overwrite=args.overwrite)
    except TOOL_ERRORS + (ResultsError, StudyDataError) as e:
        sys.exit(report_error('efficacy_study.py', e))


if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
