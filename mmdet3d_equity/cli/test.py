"""Evaluate a checkpoint, as MMDetection3D's tools/test.py.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--show-dir DIR] [--score-thr T] [--task TASK] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

Several processes or GPUs: ``bash tools/dist_test.sh CONFIG CHECKPOINT GPUS
[ARGS]``. From Python: :mod:`mmdet3d_equity.apis.runner`.
"""
import argparse
import sys

from mmdet3d_equity.apis.errors import one_line_errors
from mmdet3d_equity.utils.config import parse_runner_args


def parse_args(argv=None):
    from mmdet3d_equity.apis.runner import TEST_TASKS
    parser = argparse.ArgumentParser(description='Test (and evaluate) a '
                                     '3D detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save evaluation logs')
    parser.add_argument(
        '--out', help='dump the raw predictions to this .pkl file')
    parser.add_argument(
        '--show-dir', help='directory where painted images are saved')
    parser.add_argument(
        '--score-thr', type=float, default=0.1,
        help='bbox score threshold for --show-dir')
    parser.add_argument(
        '--task', choices=TEST_TASKS, default='lidar_det',
        help='visualisation task for --show-dir')
    return parse_runner_args(parser, argv)


def build_cfg(args):
    from mmdet3d_equity.apis.runner import build_test_config
    return build_test_config(
        args.config, args.checkpoint, work_dir=args.work_dir, out=args.out,
        show_dir=args.show_dir, score_thr=args.score_thr, task=args.task,
        cfg_options=args.cfg_options, launcher=args.launcher)


@one_line_errors('test.py')
def main(argv=None):
    args = parse_args(argv)
    from mmdet3d_equity.apis.errors import TOOL_ERRORS, report_error
    from mmdet3d_equity.apis.runner import run
    try:
        run(build_cfg(args), train=False)
    except TOOL_ERRORS as e:
        sys.exit(report_error('test.py', e))


if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
