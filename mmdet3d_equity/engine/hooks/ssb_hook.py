"""Dynamic semantic-scale-balanced (SSB) training hook.

SSB is configured here and only here::

    custom_hooks = [dict(type='SemanticScaleBalanceHook', warmup_epochs=5)]

The model config stays the stock one. In ``before_train`` the hook wraps the
head's built classification loss (found through the head's adapter) in a
:class:`~mmdet3d_equity.models.losses.SemanticScaleBalancedLoss` and adds
its capture hooks; ``after_train`` removes all of them and puts the stock
loss back. Nothing touches the train dataloader before training starts, so
``tools/test.py`` of an SSB checkpoint needs no training data.
"""
import math
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmdet3d.registry import HOOKS
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper

from mmdet3d_equity.models.head_adapters import adapter_for_head, find_head
from mmdet3d_equity.models.losses.ssb_loss import HeadSSB
from mmdet3d_equity.semantic_scale.features import (
    HeadInputCapture,
    ObjectFeatureSampler,
)
from mmdet3d_equity.semantic_scale.measures import _check_alpha
from mmdet3d_equity.semantic_scale.store import ClassFeatureStore
from mmdet3d_equity.utils.errors import ArgumentError

from .guard import misplaced_keys, remove_on_failure, resume_history

CKPT_KEY = 'semantic_scale_balance'
#: settings of the EquityHook (a custom_hooks.N key that reached this hook
#: was meant for it)
EQUITY_KEYS = ('loss', )


@HOOKS.register_module()
class SemanticScaleBalanceHook(Hook):
    """Estimate class semantic scales online and update the SSB loss weights.

    Before training the head's classification loss is wrapped in a
    SemanticScaleBalancedLoss (weights 1: the stock loss, bit for bit). Every
    training iteration the detector feature at each ground-truth object is
    captured during the normal forward (forward pre-hooks on the detector
    and its head, no second pass; see
    :mod:`mmdet3d_equity.semantic_scale.features`) and pushed into a
    per-class FIFO store. During the warm-up the class weights stay 1 (the
    plain loss); afterwards, every ``interval`` iterations, the class scales
    are recomputed from the store (all ranks' statistics all-reduced) and the
    class weights are set. A warm-up that is not shorter than the schedule
    is refused before training starts. The store and the class weights are
    saved in checkpoints (key ``semantic_scale_balance``) and restored on
    resume; the model state dict stays that of plain mmdet3d.

    Args:
        warmup_epochs (int): plain-loss warm-up in epochs (default 5, the
            paper's n). Converted with the train dataloader length.
        warmup_iters (int, optional): warm-up in iterations instead; give at
            most one of the two (``warmup_epochs=None`` to use this).
        interval (int, optional): iterations between updates after the
            warm-up. Default: one epoch (the dataloader length).
        capacity (int, optional): features kept per class per rank. Default:
            ceil(len(train dataset) / world size), capped at
            ``max_capacity`` -- about one epoch of objects for rare classes,
            the most recent ones for common classes.
        max_capacity (int): memory bound for the default capacity.
        alpha (float): inter-class term parameter (>= 1; 2 long-tailed).
        min_count (int): classes with fewer stored features are unmeasured
            (they get the largest measured weight).
        scale_floor (float): floor of S_i (bounds the largest weight).
        sampling (str): 'bilinear' or 'nearest' feature sampling.
        level (int): BEV head input level.
        point_cloud_range (list, optional): BEV extent override.
        l2_normalize (bool): L2-normalise object features before storing.
        allow_changed_settings (bool): resume a checkpoint trained with
            other settings (logged, and kept in the checkpoints' history);
            by default such a resume is refused. Defaults to False.
    """

    priority = 'NORMAL'

    def __init__(self,
                 warmup_epochs: Optional[int] = 5,
                 warmup_iters: Optional[int] = None,
                 interval: Optional[int] = None,
                 capacity: Optional[int] = None,
                 max_capacity: int = 4096,
                 alpha: float = 2.0,
                 min_count: int = 2,
                 scale_floor: float = 0.05,
                 sampling: str = 'bilinear',
                 level: int = 0,
                 point_cloud_range: Optional[Sequence[float]] = None,
                 l2_normalize: bool = False,
                 allow_changed_settings: bool = False, **unknown) -> None:
        self._misplaced = {k: unknown.pop(k) for k in list(unknown)
                           if k in EQUITY_KEYS}
        if unknown:
            raise ArgumentError(
                f'SemanticScaleBalanceHook got unexpected arguments '
                f'{sorted(unknown)}; see its docstring (docs/semantic_scale'
                '.md) for the arguments it takes')
        if not isinstance(allow_changed_settings, bool):
            raise TypeError('SemanticScaleBalanceHook: allow_changed_settings '
                            f'must be True or False, got '
                            f'{allow_changed_settings!r}')
        self.allow_changed_settings = allow_changed_settings
        self._history: list = []
        if warmup_iters is not None and warmup_epochs not in (None, 5):
            raise ValueError('SemanticScaleBalanceHook: give warmup_epochs '
                             'or warmup_iters, not both.')
        if warmup_iters is not None:
            warmup_epochs = None
        if warmup_epochs is None and warmup_iters is None:
            raise ValueError('SemanticScaleBalanceHook: set warmup_epochs '
                             '(default 5) or warmup_iters.')
        for name, v in (('warmup_epochs', warmup_epochs),
                        ('warmup_iters', warmup_iters)):
            if v is not None and (int(v) != v or v < 0):
                raise ValueError(f'SemanticScaleBalanceHook: {name} must be '
                                 f'an integer >= 0, got {v!r}')
        for name, v in (('interval', interval), ('capacity', capacity),
                        ('max_capacity', max_capacity)):
            if v is not None and (int(v) != v or v < 1):
                raise ValueError(f'SemanticScaleBalanceHook: {name} must be '
                                 f'an integer >= 1, got {v!r}')
        if capacity is not None and capacity < 2:
            raise ValueError('SemanticScaleBalanceHook: capacity must be '
                             '>= 2 features per class')
        self.alpha = _check_alpha(alpha)
        if int(min_count) < 2:
            raise ValueError(f'SemanticScaleBalanceHook: min_count must be '
                             f'>= 2, got {min_count}')
        if not 0 < float(scale_floor) <= 1:
            raise ValueError(f'SemanticScaleBalanceHook: scale_floor must lie'
                             f' in (0, 1], got {scale_floor}')
        if sampling not in ('bilinear', 'nearest'):
            raise ValueError(f"SemanticScaleBalanceHook: sampling must be "
                             f"'bilinear' or 'nearest', got {sampling!r}")
        self.warmup_epochs = warmup_epochs
        self.warmup_iters = warmup_iters
        self.interval = interval
        self.capacity = capacity
        self.max_capacity = int(max_capacity)
        self.min_count = int(min_count)
        self.scale_floor = float(scale_floor)
        self.sampling = sampling
        self.level = int(level)
        self.point_cloud_range = point_cloud_range
        self.l2_normalize = bool(l2_normalize)
        self.store: Optional[ClassFeatureStore] = None
        self.ssb: Optional[HeadSSB] = None
        self.sampler: Optional[ObjectFeatureSampler] = None
        self.num_classes: Optional[int] = None
        self.class_names: List[str] = []
        self.last_result: Optional[dict] = None
        self._capture = None
        self._pending_state = None

    # ------------------------------------------------------------------
    @property
    def loss(self):
        """The installed SemanticScaleBalancedLoss (None when not
        installed)."""
        return None if self.ssb is None else self.ssb.loss

    def install(self, model) -> None:
        """Wrap the head's classification loss and add the capture hooks
        (``model``: the detector or its DDP wrapper)."""
        self.remove()
        model = model.module if is_model_wrapper(model) else model
        head = find_head(model)
        adapter = adapter_for_head(head)
        adapter.check_ssb(head)
        self.ssb = HeadSSB(head, adapter)
        try:
            self.num_classes = self.ssb.loss.num_classes
            self.sampler = ObjectFeatureSampler(
                model, self.num_classes, mode=self.sampling,
                level=self.level, point_cloud_range=self.point_cloud_range,
                l2_normalize=self.l2_normalize)
            self._capture = HeadInputCapture(model, head,
                                             self._on_head_input)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Remove every torch hook and put the stock loss back."""
        if self._capture is not None:
            self._capture.remove()
            self._capture = None
        if self.ssb is not None:
            self.ssb.remove()
            self.ssb = None

    def _on_head_input(self, feats, data_samples) -> None:
        f, lab = self.sampler(feats, data_samples)
        if self.store is not None and f.shape[0]:
            self.store.push(f, lab)

    def settings(self) -> dict:
        """The settings that determine the SSB weights (in checkpoints)."""
        return dict(warmup_epochs=self.warmup_epochs,
                    warmup_iters=self.warmup_iters, interval=self.interval,
                    capacity=self.capacity, max_capacity=self.max_capacity,
                    alpha=self.alpha, min_count=self.min_count,
                    scale_floor=self.scale_floor, sampling=self.sampling,
                    level=self.level,
                    point_cloud_range=self.point_cloud_range,
                    l2_normalize=self.l2_normalize)

    def before_run(self, runner) -> None:
        if self._misplaced:
            raise misplaced_keys(runner, 'SemanticScaleBalanceHook',
                                 self._misplaced, 'EquityHook')
        remove_on_failure(runner, self.remove)

    def before_train(self, runner) -> None:
        self.install(runner.model)
        try:
            self._setup_training(runner)
        except BaseException:
            self.remove()
            raise

    def _setup_training(self, runner) -> None:
        loader = runner.train_dataloader
        ds = loader.dataset
        names = list(ds.metainfo.get('classes', [])) if hasattr(
            ds, 'metainfo') else []
        if len(names) != self.num_classes:
            names = [f'class{i}' for i in range(self.num_classes)]
        self.class_names = names
        iters_per_epoch = len(loader)
        if self.warmup_iters is not None:
            self._warmup = self.warmup_iters
            how = f'warmup_iters={self.warmup_iters}'
        else:
            self._warmup = self.warmup_epochs * iters_per_epoch
            how = (f'warmup_epochs={self.warmup_epochs} x {iters_per_epoch} '
                   'iterations per epoch')
        self._interval = self.interval or iters_per_epoch
        max_iters = int(runner.max_iters)
        if self._warmup >= max_iters:
            raise ValueError(
                f'SemanticScaleBalanceHook: the warm-up ({self._warmup} '
                f'iterations: {how}) is not shorter than the schedule '
                f'({max_iters} iterations), so the SSB class weights would '
                'never be used and the run would train the plain loss. '
                'Shorten warmup_epochs / warmup_iters or train longer.')
        ws = get_world_size()
        if self.capacity is None:
            cap = min(math.ceil(len(ds) / ws), self.max_capacity)
            cap_src = (f'ceil(len(dataset)={len(ds)} / world_size={ws}) '
                       f'capped at max_capacity={self.max_capacity}')
        else:
            cap, cap_src = self.capacity, 'configured'
        cap = max(cap, 2)
        self.store = ClassFeatureStore(self.num_classes, cap)
        state, self._pending_state = self._pending_state, None
        if state is not None:
            self._restore(state, runner)
        if runner.iter < self._warmup:
            # warm-up uses the plain loss, also when weights were loaded with
            # load_from from another run
            self.loss.reset_class_weights()
        MMLogger.get_current_instance().info(
            f'SemanticScaleBalanceHook: {type(self.ssb.head).__name__}.'
            f'{self.ssb.attr} wrapped in SemanticScaleBalancedLoss; features '
            f'= {self.sampler.describe()}; store capacity {cap} per class '
            f'per rank ({cap_src}); plain loss for {self._warmup} iterations '
            f'({how}), then class weights updated every {self._interval} '
            f'iterations; alpha={self.alpha}, min_count={self.min_count}, '
            f'scale_floor={self.scale_floor}, '
            f'l2_normalize={self.l2_normalize}; classes {self.class_names}')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        done = runner.iter + 1  # iterations completed
        if done >= self._warmup and done > 0 and \
                (done - self._warmup) % self._interval == 0:
            self.update(runner)

    def update(self, runner=None) -> dict:
        """Recompute class scales from the store and set the loss weights
        (collective under DDP)."""
        res = self.store.compute(self.alpha, self.min_count,
                                 self.scale_floor)
        self.loss.set_class_weights(res['weight'])
        self.last_result = {k: np.asarray(v).tolist() for k, v in res.items()
                            if k != 'centres'}
        self._log(res, runner)
        return res

    def _log(self, res, runner) -> None:
        logger = MMLogger.get_current_instance()
        it = runner.iter + 1 if runner is not None else -1
        rows = [f'{n}: count={int(c)} S\'={sp:.3f} W={w:.3f} S={s:.3f} '
                f'weight={wt:.3f}' + ('' if m else ' (unmeasured)')
                for n, c, sp, w, s, wt, m in zip(
                    self.class_names, res['count'], res['scale_prime'],
                    res['inter_class'], res['scale'], res['weight'],
                    res['measured'])]
        logger.info(f'SemanticScaleBalanceHook: iter {it}: class weights '
                    f'updated; ' + '; '.join(rows))
        if runner is None:
            return
        hub = runner.message_hub
        for n, sp, s, wt, c in zip(self.class_names, res['scale_prime'],
                                   res['scale'], res['weight'],
                                   res['count']):
            hub.update_scalar(f'train/ssb/weight_{n}', float(wt))
            hub.update_scalar(f'train/ssb/scale_{n}', float(s))
            hub.update_scalar(f'train/ssb/scale_prime_{n}', float(sp))
            hub.update_scalar(f'train/ssb/count_{n}', float(c))

    def after_train(self, runner) -> None:
        self.remove()

    def after_run(self, runner) -> None:
        self.remove()

    # -- checkpoints ---------------------------------------------------
    def state_dict(self) -> dict:
        weights = None if self.loss is None else \
            self.loss.class_weights.detach().cpu().clone()
        return dict(store=None if self.store is None else
                    self.store.state_dict(),
                    class_weights=weights,
                    last_result=self.last_result,
                    world_size=get_world_size(),
                    settings=self.settings(), history=list(self._history))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Runner.save_checkpoint runs on rank 0 only: the saved store is
        # rank 0's (see _restore for DDP resume); the class weights are
        # identical on every rank.
        checkpoint[CKPT_KEY] = self.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if getattr(runner, '_resume', False):
            # a resume continues the run: its settings must be the same
            self._history = resume_history(
                runner, 'SemanticScaleBalanceHook',
                checkpoint.get(CKPT_KEY) or {}, self.settings(),
                self.allow_changed_settings,
                checkpoint.get('meta', {}).get('iter', 0))
        if CKPT_KEY not in checkpoint:
            MMLogger.get_current_instance().warning(
                'SemanticScaleBalanceHook: the checkpoint has no SSB state '
                '(feature store, class weights); training from it starts '
                'with an empty store and class weights 1.')
            return
        if self.store is None:
            # not training yet (resume, load_from, or tools/test.py, which
            # never trains): applied in before_train
            self._pending_state = checkpoint[CKPT_KEY]
        else:
            self._restore(checkpoint[CKPT_KEY], runner)

    def load_state_dict(self, state: dict) -> None:
        self._restore(state, None)

    def _restore(self, state: dict, runner) -> None:
        if state.get('store') is not None:
            self.store.load_state_dict(state['store'])
        weights = state.get('class_weights')
        if weights is not None:
            self.loss.set_class_weights(torch.as_tensor(weights).double())
        self.last_result = state.get('last_result')
        MMLogger.get_current_instance().info(
            'SemanticScaleBalanceHook: restored the feature store from the '
            'checkpoint (objects per class: '
            f'{self.store.counts().tolist()}) and the class weights '
            f'{self.loss.class_weights.tolist()}')
        saved_ws, ws = state.get('world_size', 1), get_world_size()
        if ws > 1:
            MMLogger.get_current_instance().info(
                f'SemanticScaleBalanceHook: restored the feature store saved '
                f'by rank 0 (of {saved_ws}) on every rank; S\' and the class '
                f'centres are unchanged by this duplication, and the FIFO '
                f'refills with each rank\'s own objects.')
