"""Score another split (val, test) against the training split's fitted
reduction and clustering, so its appearance likelihoods are on the training
split's scale (then bin them into rare / medium / common slices with
SliceMetric's LikelihoodSlices, docs/slices.md).

    python tools/compute_likelihoods.py CONFIG --out lik.npz --save-scorer
    python tools/score_split.py CONFIG --scorer lik_scorer.npz --split val \\
        --out lik_val.npz [--slice-file frame_modes.json] [--device cuda] \\
        [--batch-size 8] [--cache-dir DIR | --no-cache] [--no-verify] \\
        [--overwrite] [--cfg-options k=v ...]

The embedder is rebuilt from the scorer file; by default it is checked to
reproduce the saved training embeddings of the first training samples.
"""
import argparse
import sys

from mmdet3d_equity.apis.errors import one_line_errors


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Score a val/test split against '
                                'a training split\'s saved scorer')
    p.add_argument('config', help='the config scored by compute_likelihoods')
    p.add_argument('--scorer', required=True,
                   help='<stem>_scorer.npz from compute_likelihoods '
                   '--save-scorer')
    p.add_argument('--split', default='val', choices=['val', 'test'])
    p.add_argument('--out', required=True,
                   help='likelihood file of the split')
    p.add_argument('--slice-file', default=None,
                   help='print the likelihood of each slice')
    p.add_argument('--device', default='cpu')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--cache-dir', default=None)
    p.add_argument('--no-cache', action='store_true')
    p.add_argument('--no-verify', action='store_true',
                   help='skip re-embedding two training samples')
    p.add_argument('--eta', type=float, default=1.0,
                   help='eta of the CSV weight column')
    p.add_argument('--gamma', type=float, default=5.0)
    p.add_argument('--overwrite', action='store_true')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


@one_line_errors('score_split.py')
def main(argv=None):
    args = parse_args(argv)
    import mmdet3d_equity  # noqa: F401  (registers the plugin)
    from mmdet3d_equity.apis.errors import TOOL_ERRORS, report_error
    from mmdet3d_equity.scoring.split_scoring import score_other_split
    from mmdet3d_equity.utils.config import load_config
    try:
        # the config as every tool loads it (--cfg-options checked) first
        load_config(args.config, args.cfg_options)
        score_other_split(
            args.config, args.scorer, args.out, split=args.split,
            device=args.device, batch_size=args.batch_size,
            cache_dir=args.cache_dir, use_cache=not args.no_cache,
            overwrite=args.overwrite, verify=not args.no_verify,
            slice_file=args.slice_file, eta=args.eta, gamma=args.gamma,
            cfg_options=args.cfg_options)
    except TOOL_ERRORS as e:
        return report_error('score_split.py', e)
    return 0


if __name__ == '__main__':
    sys.exit(main())
