"""EquitySamplingHook: binds a resampling run to its checkpoints.

The resampling mode (``EquityWeightedSampler`` /
``EquityRepeatFactorSampler``) weights no loss, so EquityHook is not in the
config to keep the run's identity. This hook does it for the sampler: the
sampler's settings and the likelihood file's content fingerprint are saved
in every checkpoint (key ``equity_sampling``), and a resume whose sampler
or likelihood file differs -- e.g. the file re-scored under the same path --
is refused unless ``allow_changed_settings=True`` (then the change is logged
and kept in the checkpoints' history), as EquityHook does for the weighting.

The samplers need it: an EquityDataset served by a resampling sampler
without it refuses its first training sample. The shipped resampling
configs list it in ``custom_hooks``; ``tools/train.py`` adds it to a
resampling config that lacks it (logged). With MMDetection3D's own
``tools/train.py``, add it yourself::

    custom_hooks = [dict(type='EquitySamplingHook')]
"""
from typing import Optional

from mmdet3d.registry import HOOKS
from mmengine.hooks import Hook

from mmdet3d_equity.datasets.equity_repeat_sampler import (
    EquityRepeatFactorSampler,
)
from mmdet3d_equity.datasets.equity_sampler import EquityWeightedSampler
from mmdet3d_equity.utils.errors import ConfigError

from .guard import restart_prefetching_workers, resume_history

CKPT_KEY = 'equity_sampling'
SAMPLERS = (EquityWeightedSampler, EquityRepeatFactorSampler)


@HOOKS.register_module()
class EquitySamplingHook(Hook):
    """Save the resampling sampler's identity in checkpoints and refuse a
    resume that changes it.

    Args:
        allow_changed_settings (bool): resume a checkpoint trained with
            another sampler setting or likelihood file (logged, and kept in
            the checkpoints' history).
    """

    priority = 'NORMAL'

    def __init__(self, allow_changed_settings: bool = False) -> None:
        self.allow_changed_settings = bool(allow_changed_settings)
        self._identity: Optional[dict] = None
        self._resumed: Optional[dict] = None
        self._history: list = []

    def before_train(self, runner) -> None:
        sampler = getattr(runner.train_dataloader, 'sampler', None)
        if not isinstance(sampler, SAMPLERS):
            raise ConfigError(
                'EquitySamplingHook binds a resampling run to its '
                'checkpoints, but train_dataloader.sampler is '
                f'{type(sampler).__name__}: use EquityWeightedSampler or '
                'EquityRepeatFactorSampler, or remove EquitySamplingHook '
                'from custom_hooks')
        self._identity = sampler.identity()
        sampler.equity.claim('binding', 'EquitySamplingHook')
        restart_prefetching_workers(runner)
        if self._resumed is not None:
            self._history = resume_history(
                runner, 'EquitySamplingHook', self._resumed, self._identity,
                self.allow_changed_settings, runner.iter)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[CKPT_KEY] = dict(settings=self._identity,
                                    history=list(self._history))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # a resume continues this run (checked in before_train, when the
        # sampler is built); load_from starts a new one
        if getattr(runner, '_resume', False):
            self._resumed = dict(checkpoint.get(CKPT_KEY) or {})
