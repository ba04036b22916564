"""EquityHook: DatasetEquity training with exact per-sample loss weighting.

Add to a config (the train dataset wrapped in ``EquityDataset``)::

    custom_hooks = [dict(type='EquityHook',
                         loss=dict(type='GeneralizedFocalLoss',
                                   eta=1.0, gamma=5.0))]

In ``before_train`` the hook finds the detector's dense head (through
``MMDistributedDataParallel.module``), checks that it is supported
(:mod:`mmdet3d_equity.models.sample_weighting`), that the train dataset
contains an EquityDataset with the same eta/gamma and no weighted sampler,
and installs two removable torch hooks:

* a forward pre-hook on the detector that, for ``mode='loss'`` in training,
  reads ``equity_likelihood`` of every data sample and activates the weights
  w_b = GFL(p_b) (normalised as configured);
* a forward hook on the head that scales the gradient of sample b's slice of
  the selected head outputs by w_b, which makes the gradient exactly that of
  sum_b w_b * L_b (see sample_weighting).

Nothing is added to the model's parameters or buffers: checkpoints,
``test.py`` and inference are those of plain mmdet3d. The logged loss values
are the usual unweighted ones; the batch's weights are logged per iteration
as ``equity_weight_mean/min/max`` (MessageHub, so log file and TensorBoard).
"""
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmdet3d.registry import HOOKS, MODELS
from mmdet3d_equity.datasets.equity_dataset import find_equity_dataset
from mmdet3d_equity.models.losses.generalized_focal_loss import \
    GeneralizedFocalLoss
from mmdet3d_equity.models.sample_weighting import (PerSampleGradWeighting,
                                                    UnsupportedHeadError)

# detector type -> attribute of its (only) loss-producing dense head
SUPPORTED_DETECTORS = {
    'VoxelNet': 'bbox_head',
    'DynamicVoxelNet': 'bbox_head',
    'CenterPoint': 'pts_bbox_head',
    'MVXTwoStageDetector': 'pts_bbox_head',
    'MVXFasterRCNN': 'pts_bbox_head',
    'DynamicMVXFasterRCNN': 'pts_bbox_head',
    'FCOSMono3D': 'bbox_head',
    'SMOKEMono3D': 'bbox_head',
}


def resolve_dense_head(detector):
    """The dense head whose loss is the detector's whole training loss."""
    name = type(detector).__name__
    if name not in SUPPORTED_DETECTORS:
        raise UnsupportedHeadError(
            f'EquityHook: detector {name} is not supported for exact '
            'per-sample weighting; supported detectors (whose training loss '
            'is exactly one dense head\'s loss): '
            f'{sorted(SUPPORTED_DETECTORS)}. Use the resampling mode '
            '(EquityWeightedSampler) instead.')
    attr = SUPPORTED_DETECTORS[name]
    head = getattr(detector, attr, None)
    if head is None:
        raise UnsupportedHeadError(f'EquityHook: {name} has no {attr}')
    for other in ('img_rpn_head', 'img_roi_head', 'img_bbox_head',
                  'pts_roi_head', 'roi_head', 'rpn_head'):
        if getattr(detector, other, None) is not None:
            raise UnsupportedHeadError(
                f'EquityHook: {name} has a {other}, whose losses the '
                'per-sample weighting does not cover; exact weighting needs '
                f'a detector whose only loss is its {attr}.')
    return head


def _unpack_forward_args(args, kwargs):
    data_samples = kwargs.get('data_samples',
                              args[1] if len(args) > 1 else None)
    mode = kwargs.get('mode', args[2] if len(args) > 2 else 'tensor')
    return data_samples, mode


@HOOKS.register_module()
class EquityHook(Hook):
    """Apply the Generalized Focal Loss weights exactly per sample.

    Args:
        loss (dict): config of a ``GeneralizedFocalLoss`` (eta, gamma,
            terms, normalisation).
        check_weights (bool): compare the weight the EquityDataset attached
            to each sample with the loss's W(p) (they share eta/gamma).
            Defaults to True.
    """

    priority = 'NORMAL'  # before LoggerHook (BELOW_NORMAL) writes the log

    def __init__(self, loss: dict = dict(type='GeneralizedFocalLoss'),
                 check_weights: bool = True) -> None:
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
        self.check_weights = check_weights
        self.weighting: Optional[PerSampleGradWeighting] = None
        self._handles = []
        self._batch_weights: Optional[torch.Tensor] = None

    # -- setup ------------------------------------------------------------
    def install(self, model, train_dataset=None, sampler=None) -> None:
        """Validate and install on ``model`` (a detector or its DDP wrapper).

        ``train_dataset`` (the train dataloader's dataset) is required for
        normalisation='dataset' and for the consistency checks.
        """
        self.remove()
        detector = model.module if is_model_wrapper(model) else model
        head = resolve_dense_head(detector)
        self.weighting = PerSampleGradWeighting(head, terms=self.gfl.terms)
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
            f'EquityHook: exact per-sample weighting of {type(head).__name__}'
            f' terms {list(self.weighting.terms)} with {self.gfl!r}',
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
        if (equity.eta, equity.gamma) != (self.gfl.eta, self.gfl.gamma):
            raise ValueError(
                f'EquityHook: GeneralizedFocalLoss(eta={self.gfl.eta}, '
                f'gamma={self.gfl.gamma}) differs from EquityDataset(eta='
                f'{equity.eta}, gamma={equity.gamma}); set the same values '
                'in both (e.g. through config variables).')
        if self.gfl.normalisation == 'dataset':
            w = equity.index_weights(dataset)
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
        w = self.gfl.weights(torch.tensor(p, dtype=torch.float64))
        if self.check_weights:
            attached = torch.tensor(
                [ds.metainfo.get('equity_weight', float('nan'))
                 for ds in data_samples], dtype=torch.float64)
            raw = self.gfl.raw_weight(torch.tensor(p, dtype=torch.float64))
            if not torch.allclose(attached, raw, rtol=1e-9, atol=1e-12):
                raise ValueError(
                    'EquityHook: the weights EquityDataset attached '
                    f'{attached.tolist()} differ from the loss\'s W(p) '
                    f'{raw.tolist()}; EquityDataset and GeneralizedFocalLoss '
                    'must use the same eta and gamma')
        return w

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
        calls = self.weighting.calls
        self.weighting.deactivate()
        if active and calls != 1:
            raise RuntimeError(
                f'EquityHook: the head ran {calls} times in one loss '
                'forward; the per-sample weighting is only exact when the '
                'loss comes from exactly one head forward')
        return None

    # -- mmengine hooks ------------------------------------------------------
    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        self.install(runner.model, loader.dataset,
                     getattr(loader, 'sampler', None))

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
