"""Train and test as MMDetection3D's tools do (what ``tools/train.py`` and
``tools/test.py`` run), usable from Python::

    from mmdet3d_equity.apis.runner import (build_runner,
                                            build_train_config)
    build_runner(build_train_config('configs/tiny/x.py', amp=True)).train()

Every argument is checked before the Runner is built (config, checkpoint,
``--out``, work directory writable), so a refused run writes nothing. Under
``launcher='pytorch'`` on a machine without CUDA the gloo group is started
from the torchrun environment (see :mod:`.launch`).
"""
import contextlib
import logging
import os.path as osp
from typing import Optional

from ..utils.config import (
    ConfigError,
    ensure_checkpoint,
    load_config,
    resolve_work_dir,
)
from ..utils.config_checks import check_machine, config_build_error
from ..utils.fileio import check_not_directory, check_output_dir
from ..utils.launch import prepare_runner_launch
from .resume import EQUITY_SAMPLERS, check_resume, type_name

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
TEST_TASKS = ('mono_det', 'multi-view_det', 'lidar_det', 'lidar_seg',
              'multi-modality_det')


def _check_launcher(launcher):
    if launcher not in LAUNCHERS:
        raise ConfigError(f'launcher must be one of {LAUNCHERS}, got '
                          f'{launcher!r}')


def build_train_config(config: str, *, work_dir: Optional[str] = None,
                       amp: bool = False, auto_scale_lr: bool = False,
                       sync_bn: str = 'none', resume: Optional[str] = None,
                       cfg_options=None, launcher: str = 'none',
                       allow_changed_settings: bool = False):
    """The training config, with the flags of MMDetection3D's train.py.

    ``resume``: None, ``'auto'`` (the latest checkpoint of the work dir) or
    a checkpoint path."""
    from mmengine.logging import print_log
    _check_launcher(launcher)
    # runner_options: refuse overrides that would not reach the Runner (a
    # config-file variable, an unknown key), so the saved config is what ran
    cfg = load_config(config, cfg_options, runner_options=True)
    cfg.launcher = launcher
    cfg.work_dir = resolve_work_dir(cfg, config, work_dir)
    if amp:
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
    if auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in \
                cfg.auto_scale_lr:
            raise ConfigError(
                '--auto-scale-lr needs auto_scale_lr = dict(enable=..., '
                'base_batch_size=N) in the config')
        cfg.auto_scale_lr.enable = True
    if sync_bn not in ('none', 'torch', 'mmcv'):
        raise ConfigError(f"sync_bn must be 'none', 'torch' or 'mmcv', got "
                          f'{sync_bn!r}')
    if sync_bn != 'none':
        cfg.sync_bn = sync_bn
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        if not osp.isfile(resume):
            raise ConfigError(f'--resume checkpoint not found: {resume!r}')
        cfg.resume = True
        cfg.load_from = resume
    if allow_changed_settings:
        if not cfg.get('resume'):
            raise ConfigError('--allow-changed-settings applies to a resumed '
                              'run: give --resume as well')
        cfg.allow_changed_settings = True  # saved with the config
    bind_resampling(cfg)
    return cfg


def bind_resampling(cfg) -> None:
    """Add EquitySamplingHook to a resampling config that lacks it (the
    sampler's settings and the likelihood file's content are then bound to
    the checkpoints); ``--allow-changed-settings`` (saved as
    ``cfg.allow_changed_settings``) reaches it, added or listed."""
    from mmengine.logging import print_log
    loader = cfg.get('train_dataloader') or {}
    sampler = loader.get('sampler') or {}
    hooks = list(cfg.get('custom_hooks') or [])
    if type_name(sampler) not in EQUITY_SAMPLERS:
        return
    allow = bool(cfg.get('allow_changed_settings', False))
    present = [h for h in hooks if type_name(h) == 'EquitySamplingHook']
    if present:
        if allow:  # --allow-changed-settings covers the resampling mode
            for h in present:
                h['allow_changed_settings'] = True
        return
    hooks.append(dict(type='EquitySamplingHook',
                      allow_changed_settings=allow))
    cfg.custom_hooks = hooks
    print_log(f'added custom_hooks.{len(hooks) - 1} = EquitySamplingHook: '
              f'the {type_name(sampler)} settings and the likelihood '
              "file's content are saved in the checkpoints and checked on "
              'resume', logger='current')


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def build_test_config(config: str, checkpoint: str, *,
                      work_dir: Optional[str] = None,
                      out: Optional[str] = None,
                      show_dir: Optional[str] = None, score_thr: float = 0.1,
                      task: str = 'lidar_det', cfg_options=None,
                      launcher: str = 'none'):
    """The test config, with the flags of MMDetection3D's test.py."""
    _check_launcher(launcher)
    cfg = load_config(config, cfg_options, runner_options=True)
    cfg.launcher = launcher
    cfg.work_dir = resolve_work_dir(cfg, config, work_dir)
    cfg.load_from = ensure_checkpoint(checkpoint)
    if out is not None:
        if not out.endswith(('.pkl', '.pickle')):
            raise ConfigError(f'--out must be a .pkl file, got {out!r}')
        # the predictions are dumped after the whole test: check now
        check_not_directory(out, '--out')
        check_output_dir(osp.dirname(osp.abspath(out)), '--out')
        cfg.test_evaluator = _as_list(cfg.test_evaluator) + [
            dict(type='DumpResults', out_file_path=out)]
    if show_dir is not None:
        if task not in TEST_TASKS:
            raise ConfigError(f'--task must be one of {TEST_TASKS}, got '
                              f'{task!r}')
        vis = cfg.default_hooks.get('visualization', None)
        if vis is None:
            raise ConfigError('--show-dir needs default_hooks.visualization '
                              '(Det3DVisualizationHook) in the config')
        vis.draw = True
        vis.test_out_dir = show_dir
        vis.score_thr = score_thr
        vis.vis_task = task
        vis.show = False
    return cfg


def check_runtime(cfg, train: bool) -> None:
    """Before the Runner is built: what the config needs of this machine
    (:func:`~mmdet3d_equity.utils.config_checks.check_machine`: AMP needs a
    GPU, mmdet3d's KittiMetric needs numba CUDA)."""
    from ..evaluation.kitti_cpu_iou import numba_cuda_available
    check_machine(cfg, train, numba_cuda_available)


@contextlib.contextmanager
def config_build_errors(cfg):
    """Within the block, an error raised by building a config dict before
    any code of the built class ran (a misspelt argument, an unregistered
    type) becomes a :class:`ConfigError` naming the key; anything else
    propagates unchanged."""
    try:
        yield
    except (TypeError, KeyError) as e:
        err = config_build_error(e, cfg)
        if err is None:
            raise
        raise err from e


def build_runner(cfg, train: bool = True):
    """The Runner of a train/test config: the work directory is checked
    first (created, writable), then what the config needs of this machine
    (:func:`check_runtime`, for training or, ``train=False``, testing);
    torchrun on CPU gets its gloo group. Errors of building config dicts
    are :class:`ConfigError` naming the key."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import mmdet3d_equity  # noqa: F401  (registers the plugin)
    check_output_dir(cfg.work_dir, 'work')
    check_runtime(cfg, train)
    if train:
        check_resume(cfg)
    prepare_runner_launch(cfg)
    with config_build_errors(cfg):
        if 'runner_type' in cfg:
            return RUNNERS.build(cfg)
        return Runner.from_cfg(cfg)


def run(cfg, train: bool):
    """Build the Runner of ``cfg`` and train (or test) with it; the errors
    of building config dicts, also those raised when training starts (the
    dataloaders, loops and evaluators are built then), are
    :class:`ConfigError` naming the key."""
    runner = build_runner(cfg, train)
    with config_build_errors(cfg):
        return runner.train() if train else runner.test()
