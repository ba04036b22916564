"""Benchmark appearance scoring: our default pipeline vs the reference recipe.

    python tools/benchmark_scoring.py             # 28,000 x 2048 (nuScenes
                                                  # train size)
    python tools/benchmark_scoring.py --cameras 6     # six cameras per sample
    python tools/benchmark_scoring.py --quick         # 3,000 x 256, seconds
    python tools/benchmark_scoring.py --skip-reference  # ours only

Synthetic embeddings with planted rare clusters (see
:func:`make_synthetic_embeddings`). Two recipes run in the same process:

* ours: the library default (:func:`mmdet3d_equity.scoring.score_embeddings`
  with its defaults: randomized PCA-64 in float32 + KMeans 'auto',
  'largest' likelihood; per-camera likelihoods combined by 'min' with
  ``--cameras 6``);
* reference (for comparison only, it has the defects we avoid): t-SNE to 3
  dims + DBSCAN(eps=1.0, min_samples=10), noise pooled into ONE cluster,
  likelihood = cluster size / largest cluster size, first camera only.

For each: wall time and *rare recall*, the fraction of planted-rare samples
that land in the lowest-likelihood decile (ties at the decile boundary are
credited fractionally, as a random tie-break would on average). Prints the
time ratio reference / ours. Target: ratio >= 50 with higher rare recall.
"""
import argparse
import time

import numpy as np

from mmdet3d_equity.apis.errors import one_line_errors
from mmdet3d_equity.scoring.cameras import combine_camera_scores
from mmdet3d_equity.scoring.clustering import (
    DEFAULT_CLUSTERER,
    DEFAULT_LIKELIHOOD,
    DEFAULT_REDUCER,
    score_embeddings,
    size_likelihood,
)


def make_synthetic_embeddings(n=28000, dim=2048, num_common=12, num_rare=6,
                              rare_size=40, cameras=1, seed=0):
    """Synthetic, GAP-like (non-negative) embeddings with planted rare
    clusters.

    Common appearances: ``num_common`` clusters with uneven sizes
    (Dirichlet), each with a wide spread along its own 8-d subspace (so a
    fine clustering splits them) plus isotropic noise. Rare appearances:
    ``num_rare`` clusters of ``rare_size`` samples, same spread. Rows are
    shuffled. With ``cameras > 1`` the array is (n, cameras, dim) and a rare
    sample is rare in one (random) camera only; its other cameras look
    common. Returns (x float32, is_rare bool (n,)).
    """
    rng = np.random.default_rng(seed)
    n_rare = num_rare * rare_size
    if n_rare >= 0.1 * n:
        raise ValueError('planted rare samples must be < 10% of n')
    weights = rng.dirichlet(np.full(num_common, 2.0))
    common_sizes = np.maximum(1, np.round(weights * (n - n_rare))).astype(int)
    common_sizes[-1] = n - n_rare - common_sizes[:-1].sum()
    labels = np.concatenate([np.repeat(np.arange(num_common), common_sizes),
                             np.repeat(num_common + np.arange(num_rare),
                                       rare_size)])
    rng.shuffle(labels)
    is_rare = labels >= num_common
    k = num_common + num_rare

    def one_camera(lab):
        centres = rng.normal(0, 1.0, (k, dim)).astype(np.float32)
        bases = rng.normal(0, 1.0, (k, 8, dim)).astype(np.float32) / \
            np.sqrt(dim / 8.0).astype(np.float32)
        x = np.empty((len(lab), dim), dtype=np.float32)
        chunk = 4096
        for s in range(0, len(lab), chunk):
            lb = lab[s:s + chunk]
            coef = rng.normal(0, 1.5, (len(lb), 8)).astype(np.float32)
            x[s:s + chunk] = centres[lb] + np.einsum(
                'nk,nkd->nd', coef, bases[lb]) + rng.normal(
                    0, 0.6, (len(lb), dim)).astype(np.float32)
        return np.maximum(x, 0.0)  # ReLU'd + pooled features are >= 0

    if cameras == 1:
        return one_camera(labels), is_rare
    xs = []
    rare_cam = rng.integers(0, cameras, n)
    for c in range(cameras):
        lab_c = labels.copy()
        # in the other cameras a rare sample looks like a random common one
        other = is_rare & (rare_cam != c)
        lab_c[other] = rng.integers(0, num_common, int(other.sum()))
        xs.append(one_camera(lab_c))
    return np.stack(xs, axis=1), is_rare


def rare_recall(likelihood, is_rare, decile=0.1):
    """Fraction of rare samples in the lowest-likelihood ``decile``; ties at
    the boundary get fractional credit."""
    p = np.asarray(likelihood, dtype=np.float64)
    m = int(np.ceil(decile * len(p)))
    t = np.sort(p)[m - 1]
    below = p < t
    tied = p == t
    slots = m - int(below.sum())
    hits = (is_rare & below).sum() + (is_rare & tied).sum() * slots / max(
        1, int(tied.sum()))
    return float(hits) / max(1, int(is_rare.sum()))


def run_ours(x, seed, threads_note=''):
    t0 = time.perf_counter()
    if x.ndim == 2:
        res = score_embeddings(x, reducer=DEFAULT_REDUCER,
                               clusterer=DEFAULT_CLUSTERER,
                               likelihood_def=DEFAULT_LIKELIHOOD, seed=seed)
        lik = res['likelihood']
    else:
        per_cam = {}
        for c in range(x.shape[1]):
            per_cam[f'cam{c}'] = score_embeddings(
                x[:, c], reducer=DEFAULT_REDUCER, clusterer=DEFAULT_CLUSTERER,
                likelihood_def=DEFAULT_LIKELIHOOD, seed=seed)
        lik = combine_camera_scores(per_cam, 'min')['likelihood']
    return time.perf_counter() - t0, lik


def run_reference(x, seed):
    from sklearn.cluster import DBSCAN
    from sklearn.manifold import TSNE
    if x.ndim == 3:
        x = x[:, 0]  # the reference embedded one camera only
    t0 = time.perf_counter()
    z = TSNE(n_components=3, random_state=seed).fit_transform(x)
    labels = DBSCAN(eps=1.0, min_samples=10).fit_predict(z)
    # the reference's defect, reproduced for comparison: noise (-1) pooled
    # into one cluster
    lik = size_likelihood(labels, 'largest')
    return time.perf_counter() - t0, lik


@one_line_errors('benchmark_scoring.py')
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--num-samples', type=int, default=28000)
    ap.add_argument('--dim', type=int, default=2048)
    ap.add_argument('--cameras', type=int, default=1,
                    help='cameras per sample (6 for nuScenes)')
    ap.add_argument('--num-rare', type=int, default=6,
                    help='planted rare clusters')
    ap.add_argument('--rare-size', type=int, default=40)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--quick', action='store_true',
                    help='small problem (3,000 x 256, rare size 20)')
    ap.add_argument('--skip-reference', action='store_true')
    from mmdet3d_equity.apis.errors import add_json_output, check_json_output
    add_json_output(ap)
    args = ap.parse_args(argv)
    check_json_output(ap, args)  # before the measurements
    if args.quick:
        args.num_samples, args.dim, args.rare_size = 3000, 256, 20
    x, is_rare = make_synthetic_embeddings(
        args.num_samples, args.dim, num_rare=args.num_rare,
        rare_size=args.rare_size, cameras=args.cameras, seed=args.seed)
    print(f'synthetic embeddings {x.shape} float32, {int(is_rare.sum())} '
          f'planted-rare samples ({is_rare.mean():.2%})', flush=True)
    out = dict(shape=list(x.shape), num_rare=int(is_rare.sum()),
               ours=dict(reducer=DEFAULT_REDUCER, clusterer=DEFAULT_CLUSTERER,
                         likelihood=DEFAULT_LIKELIHOOD))
    t, lik = run_ours(x, args.seed)
    out['ours'].update(seconds=t, rare_recall=rare_recall(lik, is_rare))
    print(f'ours     : {t:8.2f} s   rare recall (lowest decile) '
          f'{out["ours"]["rare_recall"]:.3f}', flush=True)
    if not args.skip_reference:
        print('reference (t-SNE 3-d + DBSCAN eps 1.0 / min_samples 10, noise '
              'pooled) ... this takes minutes at full size', flush=True)
        t, lik = run_reference(x, args.seed)
        out['reference'] = dict(seconds=t,
                                rare_recall=rare_recall(lik, is_rare))
        out['speedup'] = out['reference']['seconds'] / out['ours']['seconds']
        print(f'reference: {t:8.2f} s   rare recall (lowest decile) '
              f'{out["reference"]["rare_recall"]:.3f}')
        print(f'speed-up (reference / ours): {out["speedup"]:.1f}x')
    if args.json:
        from mmdet3d_equity.utils.fileio import atomic_write_json
        atomic_write_json(args.json, out, overwrite=args.overwrite, indent=2)
    return out


if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
