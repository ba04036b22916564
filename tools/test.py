"""Evaluate a checkpoint, as MMDetection3D's tools/test.py.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--show-dir DIR] [--score-thr T] [--task TASK] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmdet3d_equity  # noqa: E402,F401  (registers the plugin)
from mmdet3d_equity.apis.config import (parse_runner_args,  # noqa: E402
                                        ConfigError,  # noqa: E402
                                        ensure_checkpoint, load_config,
                                        resolve_work_dir)


def parse_args(argv=None):
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
        '--task', choices=['mono_det', 'multi-view_det', 'lidar_det',
                           'lidar_seg', 'multi-modality_det'],
        default='lidar_det', help='visualisation task for --show-dir')
    return parse_runner_args(parser, argv)


def build_cfg(args):
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = resolve_work_dir(cfg, args.config, args.work_dir)
    cfg.load_from = ensure_checkpoint(args.checkpoint)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ConfigError(f'--out must be a .pkl file, got {args.out!r}')
        cfg.test_evaluator = _as_list(cfg.test_evaluator) + [
            dict(type='DumpResults', out_file_path=args.out)]
    if args.show_dir is not None:
        vis = cfg.default_hooks.get('visualization', None)
        if vis is None:
            raise ConfigError('--show-dir needs default_hooks.visualization '
                              '(Det3DVisualizationHook) in the config')
        vis.draw = True
        vis.test_out_dir = args.show_dir
        vis.score_thr = args.score_thr
        vis.vis_task = args.task
        vis.show = False
    return cfg


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = build_cfg(args)
    except ConfigError as e:
        sys.exit(f'test.py: error: {e}')
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.test()


if __name__ == '__main__':
    main()
