"""The main job on the embedded tiny dataset (run by ``tools/setup.sh``).

Steps (``--force`` reruns all, replacing earlier outputs):

1. generate the tiny synthetic KITTI dataset (``data/tiny_kitti``), unless
   it is there;
2. score the appearance likelihoods of its training split with
   ``tools/compute_likelihoods.py`` (unless the file is there) and report how
   the planted rare appearance mode scores against the common ones;
3. train, evaluate and compare the tiny PointPillars baseline and its
   DatasetEquity variant with ``tools/benchmark.py`` (which runs
   ``tools/train.py`` and ``tools/test.py``).

A summary is written to ``work_dirs/demo/summary.json``; when it exists the
demo only prints it.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
BASELINE = 'configs/tiny/pointpillars_tiny-kitti-3class.py'
EQUITY = 'configs/tiny/pointpillars_tiny-kitti-3class_equity.py'
# KITTI 3D AP40, moderate, at the loose IoU thresholds (Car 0.5, Pedestrian
# and Cyclist 0.25): what a 1.5-minute CPU training can reach.
METRIC = '3D_AP40_moderate_loose'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-root', default=osp.join(ROOT, 'data', 'tiny_kitti'))
    p.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    p.add_argument('--frames', type=int, default=64,
                   help='frames of the tiny KITTI dataset (default 64)')
    p.add_argument('--force', action='store_true',
                   help='rerun every step, replacing earlier outputs')
    return p.parse_args(argv)


def run(cmd, env):
    print('[demo] $ ' + ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def main(argv=None):
    args = parse_args(argv)
    summary_path = osp.join(args.work_dir, 'summary.json')
    if osp.isfile(summary_path) and not args.force:
        with open(summary_path) as f:
            summary = json.load(f)
        print(f'[demo] already done ({summary_path}); rerun with '
              '`bash tools/setup.sh --rerun-demo`')
        print(json.dumps(summary['rare_mode'], indent=1))
        print(f'[demo] baseline vs equity: {summary["comparison_dir"]}')
        return summary
    if args.force and osp.isdir(args.work_dir):
        shutil.rmtree(args.work_dir)
    os.makedirs(args.work_dir, exist_ok=True)
    env = dict(os.environ, EQUITY_TINY_KITTI=args.data_root)
    py = sys.executable
    t0 = time.time()

    if args.force or not osp.isfile(
            osp.join(args.data_root, 'kitti_infos_train.pkl')):
        cmd = [py, 'tools/create_tiny_dataset.py', 'kitti', '--out',
               args.data_root, '--frames', str(args.frames)]
        if osp.exists(args.data_root):
            cmd.append('--overwrite')
        run(cmd, env)
    else:
        print(f'[demo] tiny KITTI already at {args.data_root}')

    lik_file = osp.join(args.data_root, 'equity_likelihoods.npz')
    if args.force or not osp.isfile(lik_file):
        # (re)computed: replace what an earlier, unfinished run left
        # (its log, CSV, figures) and, with --force, the file itself
        cmd = [py, 'tools/compute_likelihoods.py', BASELINE, '--out',
               lik_file, '--seed', '0', '--overwrite']
        run(cmd, env)
    else:
        print(f'[demo] likelihoods already at {lik_file}')
    modes = rare_mode_report(args.data_root, lik_file)

    compare_dir = osp.join(args.work_dir, 'comparison')
    run([py, 'tools/benchmark.py', '--baseline', BASELINE, '--arm',
         f'equity={EQUITY}', '--seeds', '0', '--work-dir', args.work_dir,
         '--out-dir', compare_dir, '--metric', METRIC], env)
    with open(osp.join(compare_dir, 'benchmark.json')) as f:
        comparison = json.load(f)
    results = comparison['runs']

    summary = dict(data_root=args.data_root, likelihood_file=lik_file,
                   rare_mode=modes, runs=results, comparison_dir=compare_dir,
                   metrics=comparison, seconds=round(time.time() - t0, 1))
    from mmdet3d_equity.fileio import atomic_write_json
    atomic_write_json(summary_path, summary, overwrite=True)
    print(f'[demo] baseline vs equity: {compare_dir}/report.md')
    print(f'[demo] done in {summary["seconds"]} s; summary: {summary_path}')
    return summary


def rare_mode_report(data_root, lik_file):
    """Median likelihood per planted appearance mode of the train split."""
    import numpy as np

    from mmdet3d_equity.scoring import load_likelihood_file
    with open(osp.join(data_root, 'frame_modes.json')) as f:
        planted = json.load(f)
    rec = load_likelihood_file(lik_file)
    by_mode = {}
    for sid, p in zip(rec['sample_ids'], rec['likelihood']):
        by_mode.setdefault(planted['modes'][sid], []).append(float(p))
    report = {m: dict(frames=len(v), median_likelihood=float(np.median(v)))
              for m, v in sorted(by_mode.items())}
    report['rare_mode'] = planted['rare_mode']
    print('[demo] appearance likelihood by planted mode (train split):')
    for m, r in sorted(by_mode.items()):
        tag = '  <- rare mode' if m == planted['rare_mode'] else ''
        print(f'[demo]   {m:6s} {len(r):3d} frames, median p = '
              f'{np.median(r):.3f}{tag}')
    return report


if __name__ == '__main__':
    main()
