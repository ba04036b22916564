"""Train a detector, as MMDetection3D's tools/train.py, with mmdet3d-equity.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--sync_bn torch] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

Several processes or GPUs: ``bash tools/dist_train.sh CONFIG GPUS
[ARGS]`` (or ``torchrun --nproc_per_node N tools/train.py CONFIG
--launcher pytorch``). From Python: :mod:`mmdet3d_equity.apis.runner`.
"""
import argparse
import sys

from mmdet3d_equity.apis.errors import one_line_errors
from mmdet3d_equity.utils.config import parse_runner_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a 3D detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true', default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate by the actual batch size')
    parser.add_argument(
        '--sync_bn', choices=['none', 'torch', 'mmcv'], default='none',
        help='convert all BatchNorm layers to SyncBatchNorm')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a value, resume from the '
        'latest checkpoint in the work dir')
    parser.add_argument(
        '--allow-changed-settings', action='store_true',
        help='resume although the checkpoint was trained with other '
        'equity/SSB settings than the config has (each difference is '
        'logged; saved in the config)')
    return parse_runner_args(parser, argv)


def build_cfg(args):
    from mmdet3d_equity.apis.runner import build_train_config
    return build_train_config(
        args.config, work_dir=args.work_dir, amp=args.amp,
        auto_scale_lr=args.auto_scale_lr, sync_bn=args.sync_bn,
        resume=args.resume, cfg_options=args.cfg_options,
        launcher=args.launcher,
        allow_changed_settings=args.allow_changed_settings)


@one_line_errors('train.py')
def main(argv=None):
    args = parse_args(argv)
    from mmdet3d_equity.apis.errors import TOOL_ERRORS, report_error
    from mmdet3d_equity.apis.runner import run
    try:
        run(build_cfg(args), train=True)
    except TOOL_ERRORS as e:
        sys.exit(report_error('train.py', e))


if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
