"""Process groups for the tools' ``--launcher pytorch`` (torchrun).

MMEngine 0.10.7's ``init_dist('pytorch')`` calls ``torch.cuda.set_device``,
which a CPU build of torch cannot do, and MMEngine's default DDP wrapper
passes ``device_ids=[LOCAL_RANK]``, which DDP refuses for a CPU model. On a
machine without CUDA the tools therefore start the gloo process group from
torchrun's environment themselves (MMEngine then skips its own
``init_dist``) and wrap the model without ``device_ids``. With CUDA nothing
changes: MMEngine does what it always does.
"""
import os
from typing import Optional

from .config import ConfigError

TORCHRUN_ENV = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def check_torchrun_env(launcher: str) -> None:
    """``--launcher pytorch`` needs torchrun's environment variables."""
    if launcher != 'pytorch':
        return
    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise ConfigError(
            f'--launcher pytorch needs the environment torchrun sets '
            f'({", ".join(missing)} missing); start the tool with '
            '`torchrun --nproc_per_node N tools/...py ... --launcher '
            'pytorch` or tools/dist_train.sh / tools/dist_test.sh')


def init_cpu_process_group(backend: str = 'gloo',
                           timeout: Optional[float] = None) -> bool:
    """Start a process group from torchrun's environment when there is no
    CUDA (returns True), else leave it to MMEngine (False)."""
    import torch.distributed as tdist
    if _cuda() or tdist.is_initialized():
        return False
    if backend != 'gloo':
        raise ConfigError(
            f'distributed backend {backend!r} needs GPUs and this machine '
            "has no CUDA; use gloo: --cfg-options "
            "env_cfg.dist_cfg.backend=gloo")
    kwargs = {}
    if timeout is not None:
        import datetime
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    tdist.init_process_group('gloo', init_method='env://', **kwargs)
    return True


def prepare_runner_launch(cfg, logger=None) -> None:
    """For a Runner config with ``cfg.launcher == 'pytorch'`` on a machine
    without CUDA: start the gloo group (``env_cfg.dist_cfg``) and wrap the
    model in DDP without ``device_ids`` (both logged)."""
    launcher = cfg.get('launcher', 'none')
    check_torchrun_env(launcher)
    if launcher != 'pytorch' or _cuda():
        return
    dist_cfg = dict((cfg.get('env_cfg') or {}).get('dist_cfg') or {})
    started = init_cpu_process_group(dist_cfg.get('backend', 'nccl'),
                                     dist_cfg.get('timeout'))
    wrapper = cfg.get('model_wrapper_cfg', None)
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    else:
        wrapper.setdefault('device_ids', None)
    import torch.distributed as tdist
    if started and tdist.get_rank() == 0:
        from mmengine.logging import print_log
        print_log('no CUDA: started the gloo process group from the torchrun '
                  'environment and set model_wrapper_cfg.device_ids=None '
                  '(DDP of a CPU model)', logger=logger or 'current')


def destroy_process_group() -> None:
    import torch.distributed as tdist
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
