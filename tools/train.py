"""Train a detector, as MMDetection3D's tools/train.py, with mmdet3d-equity.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--sync_bn torch] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

Multi-GPU / multi-process: ``torchrun --nproc_per_node N tools/train.py CONFIG
--launcher pytorch`` (or tools/dist_train.sh).
"""
import argparse
import logging
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.logging import print_log  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmdet3d_equity  # noqa: E402,F401  (registers the plugin)
from mmdet3d_equity.apis.config import (parse_runner_args,  # noqa: E402
                                        ConfigError, load_config,  # noqa: E402
                                        resolve_work_dir)


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
    return parse_runner_args(parser, argv)


def build_cfg(args):
    # runner_options: refuse overrides that would not reach the Runner (a
    # config-file variable, an unknown key), so the saved config is what ran
    cfg = load_config(args.config, args.cfg_options, runner_options=True)
    cfg.launcher = args.launcher
    cfg.work_dir = resolve_work_dir(cfg, args.config, args.work_dir)

    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in the config.',
                      logger='current', level=logging.WARNING)
        else:
            if wrapper != 'OptimWrapper':
                raise ConfigError(
                    f'--amp needs optim_wrapper.type OptimWrapper, the config '
                    f'has {wrapper!r}')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in \
                cfg.auto_scale_lr:
            raise ConfigError(
                '--auto-scale-lr needs auto_scale_lr = dict(enable=..., '
                'base_batch_size=N) in the config')
        cfg.auto_scale_lr.enable = True

    if args.sync_bn != 'none':
        cfg.sync_bn = args.sync_bn

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise ConfigError(f'--resume checkpoint not found: '
                              f'{args.resume!r}')
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = build_cfg(args)
    except ConfigError as e:
        sys.exit(f'train.py: error: {e}')
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
