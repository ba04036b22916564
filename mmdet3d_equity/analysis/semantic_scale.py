"""Per-class semantic scale of a training split under a trained detector
(what ``tools/semantic_scale.py`` runs), usable from Python::

    from mmdet3d_equity.analysis.semantic_scale import measure_semantic_scale
    report = measure_semantic_scale('configs/tiny/x.py', 'epoch_20.pth',
                                    out_dir='work_dirs/ss')

Runs the detector over the training split (random augmentations removed from
the train pipeline unless ``keep_augmentation``), takes the detector feature
at every ground-truth object (see docs/semantic_scale.md for the feature of
each head) and writes to ``out_dir``:

* ``semantic_scale.json`` -- per class: count, S', inter-class term W, S,
  SSB weight; the imbalance summary; marginal-effect curves; and, with
  ``eval_results``, the Pearson correlation of per-class AP with counts and
  with semantic scale;
* ``count_vs_scale.png``, ``marginal_effect.png``.

Everything that can be checked is checked before the detector runs: the
config, the outputs (existing ones are kept unless ``overwrite``; the
directory must be writable), the checkpoint (loaded strictly: missing,
unexpected or mis-shaped keys are an error naming them) and the evaluation
results file.
"""
import os.path as osp
import sys
from typing import Dict, Optional

from ..utils.config import ensure_checkpoint, load_config
from ..utils.errors import SemanticScaleError  # noqa: F401
from ..utils.fileio import (
    OutputExistsError,
    atomic_write_json,
    check_output_dir,
)
from ..utils.identity import inner_dataset_cfg

#: random augmentations dropped from the train pipeline for measurement
RANDOM_TRANSFORMS = frozenset({
    'ObjectSample', 'ObjectNoise', 'RandomFlip3D', 'GlobalRotScaleTrans',
    'PointShuffle', 'RandomJitterPoints', 'RandomDropPointsColor',
    'PhotoMetricDistortion3D', 'RandomShiftScale', 'RandomResize3D',
    'RandomFlip', 'mmdet.RandomFlip', 'PhotoMetricDistortion',
    'mmdet.PhotoMetricDistortion', 'RandomCrop3D', 'mmdet.RandomCrop',
    'BEVFusionRandomFlip3D', 'BEVFusionGlobalRotScaleTrans'
})
REPORT = 'semantic_scale.json'
FIGURES = ('count_vs_scale.png', 'marginal_effect.png')
SAMPLING = ('bilinear', 'nearest')


def default_out_dir(config: str) -> str:
    name = osp.splitext(osp.basename(config.split('::')[-1]))[0]
    return osp.join('work_dirs', 'semantic_scale', name)


def output_paths(out_dir: str) -> Dict[str, str]:
    paths = dict(report=osp.join(out_dir, REPORT))
    for f in FIGURES:
        paths[osp.splitext(f)[0]] = osp.join(out_dir, f)
    return paths


def check_parameters(max_samples=None, alpha=2.0, min_count=2,
                     sampling='bilinear', level=0, curve_repeats=3) -> None:
    """Raise SemanticScaleError naming the first bad parameter."""
    def bad(msg):
        raise SemanticScaleError(msg)
    if max_samples is not None and (isinstance(max_samples, bool) or
                                    not isinstance(max_samples, int) or
                                    max_samples < 1):
        bad(f'max_samples (--max-samples) must be an integer >= 1 or None, '
            f'got {max_samples!r}')
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or \
            not alpha >= 1:
        bad(f'alpha (--alpha) must be a number >= 1 (2 for long-tailed '
            f'data, 1 for balanced data), got {alpha!r}')
    if isinstance(min_count, bool) or not isinstance(min_count, int) or \
            min_count < 2:
        bad(f'min_count (--min-count) must be an integer >= 2, got '
            f'{min_count!r}')
    if sampling not in SAMPLING:
        bad(f'sampling (--sampling) must be one of {SAMPLING}, got '
            f'{sampling!r}')
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        bad(f'level (--level) must be an integer >= 0, got {level!r}')
    if isinstance(curve_repeats, bool) or \
            not isinstance(curve_repeats, int) or curve_repeats < 1:
        bad(f'curve_repeats (--curve-repeats) must be an integer >= 1, got '
            f'{curve_repeats!r}')


def measurement_dataset_cfg(cfg, keep_augmentation: bool, logger=None):
    """The innermost train dataset config, random transforms removed."""
    ds, _ = inner_dataset_cfg(cfg.train_dataloader.dataset)
    if 'datasets' in ds:
        raise SemanticScaleError(
            'ConcatDataset train sets are not supported by the semantic '
            'scale measurement; point the config at one dataset.')
    ds = ds.copy()
    if not keep_augmentation:
        kept, dropped = [], []
        for t in ds.pipeline:
            (dropped if t['type'] in RANDOM_TRANSFORMS else kept).append(t)
        ds.pipeline = kept
        if logger is not None:
            logger.info(f'semantic_scale: removed random train transforms '
                        f'{[t["type"] for t in dropped]}; pipeline: '
                        f'{[t["type"] for t in kept]}')
    return ds


def load_detector(cfg, checkpoint: str):
    """The detector of ``cfg`` with the weights of ``checkpoint``, loaded
    strictly through MMEngine's checkpoint loader (CheckpointMismatchError
    naming missing, unexpected and mis-shaped keys)."""
    from mmdet3d.registry import MODELS

    from ..scoring.embedders import load_checked, read_state_dict
    model = MODELS.build(cfg.model)
    load_checked(model, read_state_dict(checkpoint), checkpoint)
    return model


class _Captured(Exception):
    pass


def measure_semantic_scale(config: str, checkpoint: str,
                           out_dir: Optional[str] = None, *,
                           max_samples: Optional[int] = None,
                           alpha: float = 2.0, min_count: int = 2,
                           sampling: str = 'bilinear', level: int = 0,
                           l2_normalize: bool = False,
                           eval_results: Optional[str] = None,
                           ap_key: Optional[str] = None,
                           metric: Optional[str] = None,
                           curve_repeats: int = 3,
                           keep_augmentation: bool = False,
                           overwrite: bool = False, cfg_options=None,
                           logger=None) -> dict:
    """Measure, write the report and figures to ``out_dir`` (default
    ``work_dirs/semantic_scale/<config name>``) and return the report."""
    check_parameters(max_samples, alpha, min_count, sampling, level,
                     curve_repeats)
    import numpy as np
    import torch
    from mmdet3d.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    from mmengine.utils import ProgressBar

    import mmdet3d_equity  # noqa: F401  (registers the plugin)

    from ..semantic_scale.features import (
        HeadInputCapture,
        ObjectFeatureSampler,
    )
    from ..semantic_scale.measures import (
        class_scales,
        imbalance_summary,
        marginal_effect_curve,
    )
    from ..visualization.semantic_scale_plots import (
        plot_count_vs_scale,
        plot_marginal_effect,
    )
    from .semantic_scale_report import (
        load_per_class_ap,
        pearson,
        pearson_undefined,
    )

    logger = logger or MMLogger.get_instance('semantic_scale')
    cfg = load_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet3d'))
    out_dir = out_dir or default_out_dir(config)
    paths = output_paths(out_dir)
    if not overwrite:
        exists = [p for p in paths.values() if osp.lexists(p)]
        if exists:
            raise OutputExistsError(
                f'output(s) {exists} already exist; pass --overwrite '
                '(overwrite=True) to replace them, or --out-dir to write '
                'elsewhere')
    check_output_dir(out_dir)
    ckpt = ensure_checkpoint(checkpoint)
    if eval_results is not None and not osp.isfile(eval_results):
        raise SemanticScaleError(
            f'--eval-results file not found: {eval_results!r}; give the '
            'metrics JSON written by tools/test.py')

    ds_cfg = measurement_dataset_cfg(cfg, keep_augmentation, logger)
    model = load_detector(cfg, ckpt)
    dataset = DATASETS.build(ds_cfg)
    class_names = list(dataset.metainfo['classes'])
    ap = None
    if eval_results is not None:  # read it before the long part
        ap = load_per_class_ap(eval_results, class_names, ap_key, metric)
    if torch.cuda.is_available():
        model = model.cuda()
    model.eval()

    sampler = ObjectFeatureSampler(model, len(class_names), mode=sampling,
                                   level=level, l2_normalize=l2_normalize)
    logger.info(f'semantic_scale: object feature = {sampler.describe()}')
    feats = [[] for _ in class_names]

    def collect(head_input, data_samples):
        f, lab = sampler(head_input, data_samples)
        f, lab = f.cpu(), lab.cpu()
        for c in range(len(class_names)):
            if (lab == c).any():
                feats[c].append(f[lab == c])
        raise _Captured  # the head input is all we need: stop the forward

    capture = HeadInputCapture(model, sampler.head, collect,
                               modes=('predict', ), training_only=False)
    n = len(dataset) if max_samples is None else min(max_samples,
                                                     len(dataset))
    bar = ProgressBar(n)
    try:
        with torch.no_grad():
            for i in range(n):
                data = pseudo_collate([dataset[i]])
                try:
                    model.test_step(data)
                except _Captured:
                    pass
                else:
                    raise SemanticScaleError(
                        'the detector head was never called; cannot '
                        'capture object features')
                bar.update()
    finally:
        capture.remove()
    sys.stdout.write('\n')

    per_class = [torch.cat(f) if f else None for f in feats]
    res = class_scales(per_class, alpha=alpha, min_count=min_count)
    summary = imbalance_summary(res['count'], res['scale_prime'],
                                res['scale'], class_names, res['measured'])
    curves = {}
    for c, name in enumerate(class_names):
        z = per_class[c]
        curves[name] = marginal_effect_curve(
            z if z is not None else np.zeros((0, 1)),
            repeats=curve_repeats, seed=0)
    classes = {}
    for c, name in enumerate(class_names):
        classes[name] = dict(
            count=int(res['count'][c]),
            scale_prime=float(res['scale_prime'][c]),
            inter_class=None if np.isnan(res['inter_class'][c]) else float(
                res['inter_class'][c]),
            scale=float(res['scale'][c]),
            ssb_weight=float(res['weight'][c]),
            measured=bool(res['measured'][c]))
    report = dict(
        config=config, checkpoint=checkpoint,
        num_samples=n, feature=sampler.describe(),
        feature_dim=int(next((z.shape[1] for z in per_class
                              if z is not None), 0)),
        objects_outside_map=int(sampler.num_dropped),
        alpha=alpha, min_count=min_count,
        l2_normalize=l2_normalize,
        augmentation_kept=keep_augmentation,
        classes=classes, imbalance=summary, marginal_effect=curves)
    if ap is not None:
        a = [ap[name] for name in class_names]
        report['evaluation'] = dict(file=eval_results, per_class_ap=ap)
        undefined = {}
        for key, what, values in (('count', 'count', res['count']),
                                  ('scale_prime', "S'", res['scale_prime']),
                                  ('scale', 'S', res['scale'])):
            report['evaluation'][f'pearson_ap_vs_{key}'] = pearson(
                a, values)
            why = pearson_undefined(a, values, 'per-class AP', what)
            if why is not None:
                undefined[f'pearson_ap_vs_{key}'] = why
                logger.warning(f'semantic_scale: the correlation of AP with '
                               f'{what} is undefined (null): {why}')
        if undefined:
            report['evaluation']['undefined'] = undefined
    plot_count_vs_scale(class_names, res['count'], res['scale_prime'],
                        res['scale'], paths['count_vs_scale'],
                        overwrite=overwrite)
    plot_marginal_effect(curves, paths['marginal_effect'],
                         overwrite=overwrite)
    atomic_write_json(paths['report'], report, overwrite=overwrite, indent=2)
    logger.info(f'semantic_scale: wrote {paths["report"]}')
    for name, v in classes.items():
        logger.info(f'  {name}: count={v["count"]} '
                    f'S\'={v["scale_prime"]:.3f} S={v["scale"]:.3f} '
                    f'weight={v["ssb_weight"]:.3f}')
    return report
