"""Measure the semantic scale of each class of a training split under a detector.

    python tools/semantic_scale.py CONFIG CHECKPOINT [--out-dir DIR]
        [--max-samples N] [--alpha A] [--min-count K] [--sampling MODE]
        [--level L] [--l2-normalize] [--eval-results FILE] [--ap-key REGEX]
        [--curve-repeats R] [--keep-augmentation] [--overwrite]
        [--cfg-options k=v ...]

Runs the detector over the training split (random augmentations removed from
the train pipeline unless --keep-augmentation), takes the detector feature at
every ground-truth object (see docs/semantic_scale.md for the feature of each
head), and writes to DIR (default work_dirs/semantic_scale/<config name>):

* semantic_scale.json -- per class: count, S', inter-class term W, S, SSB
  weight; the imbalance summary; marginal-effect curves; and, with
  --eval-results, the Pearson correlation of per-class AP with counts and
  with semantic scale;
* count_vs_scale.png, marginal_effect.png.

Outputs are written atomically; an existing report is kept unless
--overwrite.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402

# random augmentations dropped from the train pipeline for measurement
RANDOM_TRANSFORMS = {
    'ObjectSample', 'ObjectNoise', 'RandomFlip3D', 'GlobalRotScaleTrans',
    'PointShuffle', 'RandomJitterPoints', 'RandomDropPointsColor',
    'PhotoMetricDistortion3D', 'RandomShiftScale', 'RandomResize3D',
    'RandomFlip', 'mmdet.RandomFlip', 'PhotoMetricDistortion',
    'mmdet.PhotoMetricDistortion', 'RandomCrop3D', 'mmdet.RandomCrop',
    'BEVFusionRandomFlip3D', 'BEVFusionGlobalRotScaleTrans'
}
REPORT = 'semantic_scale.json'


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Per-class semantic scale of a training split')
    p.add_argument('config', help='detector config')
    p.add_argument('checkpoint', help='trained checkpoint (.pth)')
    p.add_argument('--out-dir', help='output directory (default '
                   'work_dirs/semantic_scale/<config name>)')
    p.add_argument('--max-samples', type=int, default=None,
                   help='use at most N training samples (the first N)')
    p.add_argument('--alpha', type=float, default=2.0,
                   help='inter-class term alpha >= 1 (2: long-tailed data, '
                   '1: balanced)')
    p.add_argument('--min-count', type=int, default=2,
                   help='classes with fewer objects are unmeasured')
    p.add_argument('--sampling', choices=['bilinear', 'nearest'],
                   default='bilinear')
    p.add_argument('--level', type=int, default=0,
                   help='BEV heads: head input level')
    p.add_argument('--l2-normalize', action='store_true',
                   help='L2-normalise object features')
    p.add_argument('--eval-results', help='per-class AP file (JSON {class: '
                   'AP} or the metrics JSON of tools/test.py)')
    p.add_argument('--ap-key', help='regular expression with {cls} that '
                   'selects the per-class AP keys of --eval-results')
    p.add_argument('--curve-repeats', type=int, default=3,
                   help='random subsets per size of the marginal curves')
    p.add_argument('--keep-augmentation', action='store_true',
                   help='keep the random augmentations of the train pipeline')
    p.add_argument('--overwrite', action='store_true',
                   help='replace an existing report')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    args = p.parse_args(argv)
    if args.max_samples is not None and args.max_samples < 1:
        p.error('--max-samples must be >= 1')
    if not args.alpha >= 1:
        p.error('--alpha must be >= 1')
    if args.min_count < 2:
        p.error('--min-count must be >= 2')
    if args.curve_repeats < 1:
        p.error('--curve-repeats must be >= 1')
    return args


def measurement_dataset_cfg(cfg, keep_augmentation: bool, logger):
    """The innermost train dataset config, random transforms removed."""
    ds = cfg.train_dataloader.dataset
    while 'dataset' in ds and 'pipeline' not in ds:
        ds = ds.dataset  # RepeatDataset, CBGSDataset, EquityDataset, ...
    if 'datasets' in ds:
        raise ValueError('ConcatDataset train sets are not supported by '
                         'tools/semantic_scale.py; point the config at one '
                         'dataset.')
    ds = ds.copy()
    if not keep_augmentation:
        kept, dropped = [], []
        for t in ds.pipeline:
            (dropped if t['type'] in RANDOM_TRANSFORMS else kept).append(t)
        ds.pipeline = kept
        logger.info(f'semantic_scale: removed random train transforms '
                    f'{[t["type"] for t in dropped]}; pipeline: '
                    f'{[t["type"] for t in kept]}')
    return ds


class _Captured(Exception):
    pass


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import torch
    from mmengine.dataset import pseudo_collate
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    from mmengine.runner.checkpoint import load_state_dict
    from mmengine.utils import ProgressBar

    import mmdet3d_equity  # noqa: F401
    from mmdet3d.registry import DATASETS, MODELS
    from mmdet3d_equity.apis.config import ensure_checkpoint, load_config
    from mmdet3d_equity.semantic_scale.features import (HeadInputCapture,
                                                        ObjectFeatureSampler)
    from mmdet3d_equity.semantic_scale.measures import (
        class_scales, imbalance_summary, marginal_effect_curve)
    from mmdet3d_equity.semantic_scale.report import (atomic_write_json,
                                                      load_per_class_ap,
                                                      pearson)
    from mmdet3d_equity.visualization.semantic_scale_plots import (
        plot_count_vs_scale, plot_marginal_effect)

    logger = MMLogger.get_instance('semantic_scale')
    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet3d'))
    name = osp.splitext(osp.basename(args.config.split('::')[-1]))[0]
    out_dir = args.out_dir or osp.join('work_dirs', 'semantic_scale', name)
    report_path = osp.join(out_dir, REPORT)
    if osp.exists(report_path) and not args.overwrite:
        raise SystemExit(f'{report_path} exists; pass --overwrite to replace '
                         f'it or --out-dir to write elsewhere.')
    ckpt = ensure_checkpoint(args.checkpoint)

    ds_cfg = measurement_dataset_cfg(cfg, args.keep_augmentation, logger)
    dataset = DATASETS.build(ds_cfg)
    class_names = list(dataset.metainfo['classes'])
    model = MODELS.build(cfg.model)
    # torch >= 2.6 defaults to weights_only=True, which refuses the
    # MMEngine training state stored next to the weights: load the user's
    # own checkpoint fully, then take its state dict.
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    load_state_dict(model, state.get('state_dict', state), strict=False,
                    logger=logger)
    if torch.cuda.is_available():
        model = model.cuda()
    model.eval()

    sampler = ObjectFeatureSampler(model, len(class_names),
                                   mode=args.sampling, level=args.level,
                                   l2_normalize=args.l2_normalize)
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
    n = len(dataset) if args.max_samples is None else min(
        args.max_samples, len(dataset))
    bar = ProgressBar(n)
    with torch.no_grad():
        for i in range(n):
            data = pseudo_collate([dataset[i]])
            try:
                model.test_step(data)
            except _Captured:
                pass
            else:
                raise RuntimeError('the detector head was never called; '
                                   'cannot capture object features')
            bar.update()
    capture.remove()
    sys.stdout.write('\n')

    per_class = [torch.cat(f) if f else None for f in feats]
    res = class_scales(per_class, alpha=args.alpha, min_count=args.min_count)
    summary = imbalance_summary(res['count'], res['scale_prime'],
                                res['scale'], class_names, res['measured'])
    curves = {}
    for c, nme in enumerate(class_names):
        z = per_class[c]
        curves[nme] = marginal_effect_curve(
            z if z is not None else np.zeros((0, 1)),
            repeats=args.curve_repeats, seed=0)
    classes = {}
    for c, nme in enumerate(class_names):
        classes[nme] = dict(
            count=int(res['count'][c]),
            scale_prime=float(res['scale_prime'][c]),
            inter_class=None if np.isnan(res['inter_class'][c]) else float(
                res['inter_class'][c]),
            scale=float(res['scale'][c]),
            ssb_weight=float(res['weight'][c]),
            measured=bool(res['measured'][c]))
    report = dict(
        config=args.config, checkpoint=args.checkpoint,
        num_samples=n, feature=sampler.describe(),
        feature_dim=int(next((z.shape[1] for z in per_class
                              if z is not None), 0)),
        objects_outside_map=int(sampler.num_dropped),
        alpha=args.alpha, min_count=args.min_count,
        l2_normalize=args.l2_normalize,
        augmentation_kept=args.keep_augmentation,
        classes=classes, imbalance=summary, marginal_effect=curves)
    if args.eval_results:
        ap = load_per_class_ap(args.eval_results, class_names, args.ap_key)
        a = [ap[nm] for nm in class_names]
        report['evaluation'] = dict(
            file=args.eval_results, per_class_ap=ap,
            pearson_ap_vs_count=pearson(a, res['count']),
            pearson_ap_vs_scale_prime=pearson(a, res['scale_prime']),
            pearson_ap_vs_scale=pearson(a, res['scale']))
    os.makedirs(out_dir, exist_ok=True)
    plot_count_vs_scale(class_names, res['count'], res['scale_prime'],
                        res['scale'], osp.join(out_dir, 'count_vs_scale.png'))
    plot_marginal_effect(curves, osp.join(out_dir, 'marginal_effect.png'))
    atomic_write_json(report_path, report)
    logger.info(f'semantic_scale: wrote {report_path}')
    for nme, v in classes.items():
        logger.info(f'  {nme}: count={v["count"]} S\'={v["scale_prime"]:.3f}'
                    f' S={v["scale"]:.3f} weight={v["ssb_weight"]:.3f}')
    return report


if __name__ == '__main__':
    main()
