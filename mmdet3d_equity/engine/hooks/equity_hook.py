"""EquityHook: DatasetEquity training with exact per-sample loss weighting.

Add to a config (the train dataset wrapped in ``EquityDataset``)::

    custom_hooks = [dict(type='EquityHook',
                         loss=dict(type='GeneralizedFocalLoss',
                                   eta=1.0, gamma=5.0))]

The GeneralizedFocalLoss given here is the one owner of eta, gamma, the
weighted terms and the normalisation. In ``before_train`` the hook finds the
detector's dense head and its head adapter (through
``MMDistributedDataParallel.module``;
:mod:`mmdet3d_equity.models.head_adapters`), checks that exact weighting is
possible, claims the EquityDataset of the train dataset (refusing a missing
wrapper and a second owner such as the EquityWeightedSampler), and installs
removable torch hooks:

* a forward pre-hook on the detector that, for ``mode='loss'`` in training,
  reads ``equity_likelihood`` of every data sample and activates the weights
  w_b = GFL(p_b) (normalised as configured);
* the head adapter's hooks (a forward hook on the head, for two-stage
  detectors also on the RPN and the RoI head's parts) that scale the
  gradient of sample b's slice of the selected head outputs by w_b, which
  makes the gradient exactly that of sum_b w_b * L_b (see sample_weighting).

Nothing is added to the model's parameters or buffers: checkpoints,
``test.py`` and inference are those of plain mmdet3d. The logged loss values
are the usual unweighted ones; the batch's weights are logged per iteration
as ``equity_weight_mean/min/max`` (MessageHub, so log file and TensorBoard).
"""
from typing import Optional

import torch
from mmdet3d.registry import HOOKS, MODELS
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmdet3d_equity.datasets.equity_dataset import find_equity_dataset
from mmdet3d_equity.datasets.equity_sampler import weight_report
from mmdet3d_equity.models.losses.generalized_focal_loss import (
    GeneralizedFocalLoss,
)
from mmdet3d_equity.models.sample_weighting import DetectorWeighting
from mmdet3d_equity.utils.errors import ArgumentError

from .guard import (
    misplaced_keys,
    remove_on_failure,
    restart_prefetching_workers,
    resume_history,
)

CKPT_KEY = 'equity_weighting'
#: GeneralizedFocalLoss settings, given in EquityHook's ``loss``
LOSS_KEYS = ('eta', 'gamma', 'terms', 'normalisation')
#: settings of the SemanticScaleBalanceHook (a custom_hooks.N key that
#: reached this hook was meant for it)
SSB_KEYS = ('warmup_epochs', 'warmup_iters', 'interval', 'capacity',
            'max_capacity', 'alpha', 'min_count', 'scale_floor', 'sampling',
            'level', 'point_cloud_range', 'l2_normalize')


def _unpack_forward_args(args, kwargs):
    data_samples = kwargs.get('data_samples',
                              args[1] if len(args) > 1 else None)
    mode = kwargs.get('mode', args[2] if len(args) > 2 else 'tensor')
    return data_samples, mode


@HOOKS.register_module()
class EquityHook(Hook):
    """Apply the Generalized Focal Loss weights exactly per sample.

    The weighting's identity (eta, gamma, terms, normalisation, the
    likelihood file's content fingerprint and the dataset's policies) is
    saved in every checkpoint (key ``equity_weighting``); resuming with
    other settings is refused unless ``allow_changed_settings=True``.

    Args:
        loss (dict): config of a ``GeneralizedFocalLoss`` (eta, gamma,
            terms, normalisation): the one place of these settings.
        allow_changed_settings (bool): resume a checkpoint trained with
            other settings (logged, and kept in the checkpoints' history).
            Defaults to False.
    """

    priority = 'NORMAL'  # before LoggerHook (BELOW_NORMAL) writes the log

    def __init__(self, loss: dict = dict(type='GeneralizedFocalLoss'),
                 allow_changed_settings: bool = False, **unknown) -> None:
        moved = sorted(k for k in unknown if k in LOSS_KEYS)
        if moved:
            raise ArgumentError(
                f'EquityHook does not take {moved}: they are settings of its '
                "loss: custom_hooks = [dict(type='EquityHook', loss=dict("
                "type='GeneralizedFocalLoss', "
                + ', '.join(f'{k}={unknown[k]!r}' for k in moved) +
                '))] (override: --cfg-options custom_hooks.N.loss.'
                f'{moved[0]}=...)')
        self._misplaced = {k: unknown.pop(k) for k in list(unknown)
                           if k in SSB_KEYS}
        if unknown:
            raise ArgumentError(f'EquityHook got unexpected arguments '
                            f'{sorted(unknown)}; it takes loss and '
                            'allow_changed_settings')
        if not isinstance(allow_changed_settings, bool):
            raise TypeError('EquityHook: allow_changed_settings must be True '
                            f'or False, got {allow_changed_settings!r}')
        self.allow_changed_settings = allow_changed_settings
        if not isinstance(loss, dict) or 'type' not in loss:
            raise TypeError('EquityHook.loss must be a config dict like '
                            "dict(type='GeneralizedFocalLoss', eta=1.0, "
                            f'gamma=5.0), got {loss!r}')
        self.gfl = MODELS.build(loss)
        if not isinstance(self.gfl, GeneralizedFocalLoss):
            raise TypeError(
                f'EquityHook.loss must build a GeneralizedFocalLoss '
                f'(mmdet3d_equity), got {type(self.gfl).__name__}; note that '
                "mmdet's QualityFocalLoss ('GFL' in mmdet) is unrelated")
        self.weighting: Optional[DetectorWeighting] = None
        self._handles = []
        self._batch_weights: Optional[torch.Tensor] = None
        self._equity = None
        self.owner = f'EquityHook@{id(self):x}'
        self._resumed: Optional[dict] = None  # the checkpoint's identity
        self._history: list = []

    # -- setup ------------------------------------------------------------
    def install(self, model, train_dataset=None, sampler=None) -> None:
        """Validate and install on ``model`` (a detector or its DDP wrapper).

        ``train_dataset`` (the train dataloader's dataset) is required for
        normalisation='dataset' and for the consistency checks.
        """
        self.remove()
        detector = model.module if is_model_wrapper(model) else model
        self.weighting = DetectorWeighting(detector, terms=self.gfl.terms)
        if train_dataset is not None:
            self._check_dataset(train_dataset, sampler)
        elif (self.gfl.normalisation == 'dataset'
              and self.gfl._dataset_mean is None):
            raise ValueError(
                "EquityHook: normalisation='dataset' needs the train dataset "
                '(or GeneralizedFocalLoss.set_dataset_mean() beforehand)')
        self.weighting.install()
        self._handles.append(
            detector.register_forward_pre_hook(self._pre_forward,
                                               with_kwargs=True))
        self._handles.append(
            detector.register_forward_hook(self._post_forward))
        print_log(
            f'EquityHook: exact per-sample weighting of '
            f'{" + ".join(self.weighting.heads)} terms '
            f'{list(self.weighting.terms)} with {self.gfl!r}',
            'current')

    def _check_dataset(self, dataset, sampler) -> None:
        equity = find_equity_dataset(dataset)
        if equity is None:
            raise ValueError(
                'EquityHook: the train dataset is not wrapped in '
                "EquityDataset; set train_dataloader.dataset = dict(type="
                "'EquityDataset', likelihood_file=..., dataset=<the train "
                'dataset>)')
        if type(sampler).__name__ == 'EquityWeightedSampler':
            raise ValueError(
                'EquityHook: the train sampler is EquityWeightedSampler, '
                'which already applies DatasetEquity by resampling; weighting '
                'the loss as well would apply W twice. Remove EquityHook '
                '(resampling mode) or use the DefaultSampler (loss '
                'weighting mode).')
        equity.claim('loss', self.owner)
        self._equity = equity
        w = self.gfl.raw_weight(equity.index_likelihoods(dataset))
        msg, level = weight_report('EquityHook', w, self.gfl)
        print_log(msg, 'current', level)
        if self.gfl.normalisation == 'dataset':
            self.gfl.set_dataset_mean(float(w.mean()))
            print_log(
                "EquityHook: normalisation='dataset': weights divided by "
                f'their train-set mean {w.mean():.6f} over {len(w)} indices',
                'current')

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if self.weighting is not None:
            self.weighting.remove()
        if self._equity is not None:
            self._equity.release('loss', self.owner)
            self._equity = None

    # -- torch hooks ---------------------------------------------------------
    def batch_weights(self, data_samples) -> torch.Tensor:
        p = []
        for i, ds in enumerate(data_samples):
            meta = ds.metainfo
            if 'equity_likelihood' not in meta:
                raise KeyError(
                    f'EquityHook: training sample {i} of the batch has no '
                    "'equity_likelihood' in its metainfo: wrap the train "
                    "dataset in EquityDataset (type='EquityDataset').")
            p.append(meta['equity_likelihood'])
        return self.gfl.weights(torch.tensor(p, dtype=torch.float64))

    def _pre_forward(self, module, args, kwargs):
        self.weighting.deactivate()
        data_samples, mode = _unpack_forward_args(args, kwargs)
        if mode != 'loss' or not module.training:
            return None
        if data_samples is None:
            raise ValueError('EquityHook: the detector was called with '
                             "mode='loss' but without data_samples")
        w = self.batch_weights(data_samples)
        self._batch_weights = w
        self.weighting.activate(w)
        return None

    def _post_forward(self, module, args, output):
        active = self.weighting._weights is not None
        calls = self.weighting.call_counts
        self.weighting.deactivate()
        if active and any(c != 1 for c in calls):
            raise RuntimeError(
                f'EquityHook: the heads {self.weighting.heads} ran {calls} '
                'times in one loss forward; the per-sample weighting is only '
                'exact when the loss comes from exactly one forward of each '
                'head')
        return None

    def identity(self) -> dict:
        """What determines the weights: the GFL settings, the likelihood
        file's content and the wrapper's policies (in checkpoints)."""
        eq = self._equity
        return dict(
            eta=self.gfl.eta, gamma=self.gfl.gamma, terms=self.gfl.terms,
            normalisation=self.gfl.normalisation,
            likelihood_content=None if eq is None else
            eq.content_fingerprint,
            strict=None if eq is None else eq.strict,
            missing=None if eq is None else eq.missing)

    # -- mmengine hooks ------------------------------------------------------
    def before_run(self, runner) -> None:
        if self._misplaced:
            raise misplaced_keys(runner, 'EquityHook', self._misplaced,
                                 'SemanticScaleBalanceHook')
        remove_on_failure(runner, self.remove)

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        self.install(runner.model, loader.dataset,
                     getattr(loader, 'sampler', None))
        try:
            if self._resumed is not None:
                self._history = resume_history(
                    runner, 'EquityHook', self._resumed, self.identity(),
                    self.allow_changed_settings, runner.iter)
            restart_prefetching_workers(runner)
        except BaseException:
            self.remove()
            raise

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[CKPT_KEY] = dict(settings=self.identity(),
                                    history=list(self._history))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # a resume continues this run (checked in before_train, when the
        # likelihood file is known); load_from starts a new one
        if getattr(runner, '_resume', False):
            self._resumed = dict(checkpoint.get(CKPT_KEY) or {})

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        w = self._batch_weights
        if w is None:
            return
        self._batch_weights = None
        stats = torch.stack([w.sum(), w.new_tensor(float(w.numel())),
                             w.min(), -w.max()]).float()
        if get_world_size() > 1:
            s = stats[:2].clone()
            m = stats[2:].clone()
            all_reduce(s, op='sum')
            all_reduce(m, op='min')
            stats = torch.cat([s, m])
        hub = runner.message_hub
        hub.update_scalar('train/equity_weight_mean',
                          float(stats[0] / stats[1]))
        hub.update_scalar('train/equity_weight_min', float(stats[2]))
        hub.update_scalar('train/equity_weight_max', float(-stats[3]))

    def after_train(self, runner) -> None:
        self.remove()

    def after_run(self, runner) -> None:
        self.remove()
