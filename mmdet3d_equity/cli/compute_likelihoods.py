"""Score the training split of a dataset config: per-sample appearance
likelihoods for DatasetEquity (embeddings -> PCA -> clusters -> p).

    python tools/compute_likelihoods.py CONFIG --out work_dirs/lik.npz
        [--embedder image] [--backbone "dict(type='mmdet.ResNet', depth=50)"]
        [--checkpoint PATH_OR_URL] [--input-size 384 | --input-size W H]
        [--resize squash|letterbox] [--batch-size 8] [--device cpu|cuda]
        [--workers 2] [--amp [--amp-dtype float16|bfloat16]]
        [--channels-last]
        [--embedder detector --detector-config CFG --detector-checkpoint CKPT]
        [--cameras CAM_FRONT ... | all] [--camera-aggregation
         concat|mean|likelihood-min|likelihood-mean] [--img-prefix DIR]
        [--reducer pca|none] [--reducer-options n_components=64 whiten=True]
        [--clusterer kmeans|gmm|dbscan|hdbscan]
        [--clusterer-options n_clusters=auto ...]
        [--likelihood largest|fraction|density] [--density-k 10]
        [--seed 0] [--eta 1 --gamma 5] [--cache-dir DIR | --no-cache]
        [--no-figures] [--overwrite] [--cfg-options k=v ...]
        [--save-scorer] [--score-split val] [--slice-file FRAME_MODES.json]

Distributed embedding: ``torchrun --nproc_per_node N
tools/compute_likelihoods.py CONFIG --out F --launcher pytorch`` (each rank
embeds its shard; rank 0 clusters and writes). See docs/likelihoods.md.
From Python: ``mmdet3d_equity.apis.scoring.run_compute_likelihoods`` (what
this tool calls) or ``mmdet3d_equity.scoring.compute_likelihoods``.
"""
import argparse
import os
import sys

from mmdet3d_equity.apis.errors import one_line_errors
from mmdet3d_equity.utils.errors import ConfigError


def _options(pairs, what):
    """['k=v', ...] -> dict with Python-literal values ('auto' stays str)."""
    import ast
    out = {}
    for p in pairs or []:
        if '=' not in p:
            raise ConfigError(f'{what} expects key=value, got {p!r}')
        k, v = p.split('=', 1)
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out


def parse_args(argv=None):
    from mmengine.config import DictAction

    from mmdet3d_equity.scoring.cameras import CAMERA_AGGREGATIONS
    from mmdet3d_equity.scoring.clustering import (
        DEFAULT_CLUSTERER,
        DEFAULT_REDUCER,
        LIKELIHOOD_DEFS,
        clusterer_types,
    )
    from mmdet3d_equity.scoring.registry import EMBEDDERS
    EMBEDDERS.import_from_location()
    p = argparse.ArgumentParser(
        description='Per-sample appearance likelihoods of a training split '
        '(DatasetEquity)', formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('config', help='dataset/detector config whose '
                   'train_dataloader.dataset is scored')
    p.add_argument('--out', required=True, help='likelihood file (.npz), '
                   'e.g. data/kitti/equity_likelihoods.npz')
    p.add_argument('--overwrite', action='store_true',
                   help='replace existing outputs')
    g = p.add_argument_group('embeddings')
    g.add_argument('--embedder', choices=sorted(EMBEDDERS.module_dict),
                   default=None, help="'image' (default), 'detector' "
                   "(implied by --detector-config) or 'points' (point-cloud "
                   'statistics, no model); see docs/extending.md for your '
                   'own')
    g.add_argument('--backbone', default=None,
                   help='image backbone config dict (Python literal), '
                   "default dict(type='mmdet.ResNet', depth=50, "
                   'out_indices=(3,), ...)')
    g.add_argument('--checkpoint', default=None,
                   help='image backbone checkpoint: local path or URL. '
                   'Without it the backbone is randomly initialised (weak).')
    g.add_argument('--input-size', type=int, nargs='+', default=[384],
                   help='S (square) or W H; default 384')
    g.add_argument('--resize', choices=['squash', 'letterbox'],
                   default='squash')
    g.add_argument('--detector-config', default=None)
    g.add_argument('--detector-checkpoint', default=None)
    g.add_argument('--cameras', nargs='+', default=None,
                   help="camera keys, or 'all'; default: the dataset's "
                   'default camera (KITTI CAM2), all six for nuScenes')
    g.add_argument('--camera-aggregation', choices=CAMERA_AGGREGATIONS,
                   default=None, help='how several cameras are combined '
                   '(default likelihood-min when several)')
    g.add_argument('--img-prefix', default=None,
                   help='image folder relative to data_root (may contain '
                   '{cam}); default from data_prefix / the standard layout')
    g.add_argument('--batch-size', type=int, default=8,
                   help='samples per forward (x cameras); does not change '
                   'the results')
    g.add_argument('--device', default='cpu')
    g.add_argument('--workers', type=int, default=2,
                   help='DataLoader workers that read, decode and resize '
                   'while the model runs (0: in the main process); does not '
                   'change the results; default 2')
    g.add_argument('--amp', action='store_true',
                   help='mixed precision (torch.autocast); embeddings change '
                   'within a small tolerance (docs/likelihoods.md)')
    g.add_argument('--amp-dtype', choices=['float16', 'bfloat16'],
                   default=None, help='autocast dtype with --amp (default '
                   'float16 on CUDA, bfloat16 on CPU)')
    g.add_argument('--channels-last', action='store_true',
                   help='channels_last memory format for the model and '
                   'images (faster convolutions on recent GPUs)')
    g.add_argument('--cache-dir', default=None,
                   help='embedding cache folder (default: '
                   '<dir of --out>/embedding_cache)')
    g.add_argument('--no-cache', action='store_true')
    g = p.add_argument_group('reduction, clustering, likelihood')
    g.add_argument('--reducer', choices=['pca', 'none'], default='pca')
    g.add_argument('--reducer-options', nargs='+', default=None,
                   help=f'PCA parameters key=value; default '
                   f'{ {k: v for k, v in DEFAULT_REDUCER.items() if k != "type"} }')  # noqa: E501
    g.add_argument('--clusterer', choices=clusterer_types(),
                   default='kmeans')
    g.add_argument('--clusterer-options', nargs='+', default=None,
                   help='clusterer parameters key=value (any parameter of '
                   'the sklearn estimator) on top of the presets: kmeans '
                   f'{ {k: v for k, v in DEFAULT_CLUSTERER.items() if k != "type"} }'  # noqa: E501
                   ", gmm {n_components: 'auto', covariance_type: 'diag'}, "
                   'dbscan/hdbscan: sklearn defaults')
    g.add_argument('--likelihood', choices=LIKELIHOOD_DEFS,
                   default='largest')
    g.add_argument('--density-k', type=int, default=10)
    g.add_argument('--seed', type=int, default=0)
    g = p.add_argument_group('outputs')
    g.add_argument('--eta', type=float, default=1.0,
                   help='eta of W(p) for the CSV weight column and figure')
    g.add_argument('--gamma', type=float, default=5.0)
    g.add_argument('--no-figures', action='store_true')
    g.add_argument('--save-scorer', action='store_true',
                   help='also write <stem>_scorer.npz: the fitted reduction '
                   'and clustering, to score other splits later '
                   '(tools/score_split.py)')
    g.add_argument('--score-split', nargs='+', default=[],
                   choices=['val', 'test'],
                   help='score these splits against the training fit too '
                   '(<stem>_<split> likelihood file + .csv)')
    g.add_argument('--slice-file', default=None,
                   help='slice file (e.g. the tiny dataset\'s '
                   'frame_modes.json): print and plot the likelihood of '
                   'each slice (<stem>_slices.json)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    p.add_argument('--launcher', choices=['none', 'pytorch'],
                   default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _literal(node):
    """The value of a literal expression, ``dict(k=v, ...)`` calls included
    (no eval)."""
    import ast
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id == 'dict' and not node.args and \
            all(k.arg for k in node.keywords):
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v)
                for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        vals = [_literal(e) for e in node.elts]
        return vals if isinstance(node, ast.List) else tuple(vals)
    return ast.literal_eval(node)


def parse_dict_literal(text: str):
    """``"dict(type='mmdet.ResNet', depth=18)"`` or ``"{'type': ...}"`` ->
    dict, or None when the text is not such a literal."""
    import ast
    try:
        value = _literal(ast.parse(text, mode='eval').body)
    except (ValueError, SyntaxError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def build_kwargs(args):
    from mmdet3d_equity.scoring.clustering import (
        DEFAULT_REDUCER,
        clusterer_preset,
    )
    embedder = args.embedder or ('detector' if args.detector_config
                                 else 'image')
    backbone = None
    if args.backbone:
        backbone = parse_dict_literal(args.backbone)
        if backbone is None:
            raise ConfigError(f'--backbone must be a dict literal, '
                             f'got {args.backbone!r}')
    if len(args.input_size) == 1:
        size = args.input_size[0]
    elif len(args.input_size) == 2:
        size = tuple(args.input_size)
    else:
        raise ConfigError('--input-size takes S or W H')
    if args.reducer == 'none':
        if args.reducer_options:
            raise ConfigError('--reducer-options given with --reducer '
                             'none')
        reducer = None
    else:
        reducer = dict(DEFAULT_REDUCER)
        reducer.update(_options(args.reducer_options, '--reducer-options'))
    clusterer = clusterer_preset(args.clusterer)
    clusterer.update(_options(args.clusterer_options, '--clusterer-options'))
    return dict(embedder=embedder, backbone=backbone,
                checkpoint=args.checkpoint, input_size=size,
                resize=args.resize, detector_config=args.detector_config,
                detector_checkpoint=args.detector_checkpoint,
                cameras=args.cameras,
                camera_aggregation=args.camera_aggregation,
                img_prefix=args.img_prefix, reducer=reducer,
                clusterer=clusterer, likelihood_def=args.likelihood,
                density_k=args.density_k, seed=args.seed,
                batch_size=args.batch_size, device=args.device,
                num_workers=args.workers, amp=args.amp,
                amp_dtype=args.amp_dtype, channels_last=args.channels_last,
                cache_dir=args.cache_dir, use_cache=not args.no_cache,
                overwrite=args.overwrite, eta=args.eta, gamma=args.gamma,
                figures=not args.no_figures, cfg_options=args.cfg_options,
                save_scorer=args.save_scorer,
                score_splits=tuple(args.score_split),
                slice_file=args.slice_file)


@one_line_errors('compute_likelihoods.py')
def main(argv=None):
    args = parse_args(argv)
    kwargs = build_kwargs(args)
    from mmdet3d_equity.apis.errors import TOOL_ERRORS, report_error
    from mmdet3d_equity.apis.scoring import run_compute_likelihoods
    try:  # kwargs: the fields of ScoringSettings, validated there
        run_compute_likelihoods(args.config, args.out,
                                launcher=args.launcher, **kwargs)
    except TOOL_ERRORS as e:
        return report_error('compute_likelihoods.py', e)
    return 0


if __name__ == '__main__':
    sys.exit(main())
