"""The main job on the embedded tiny dataset (run by ``tools/setup.sh``).

Steps, each skipped when its output already exists (``--force`` reruns all):

1. generate the tiny synthetic KITTI dataset (``data/tiny_kitti``);
2. train the tiny PointPillars on it with ``tools/train.py``;
3. evaluate the checkpoint with ``tools/test.py`` (stock KittiMetric).

A summary is written to ``work_dirs/demo/summary.json``.
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
        print(json.dumps(summary['metrics'], indent=1))
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

    config = 'configs/tiny/pointpillars_tiny-kitti-3class.py'
    train_dir = osp.join(args.work_dir, 'baseline')
    run([py, 'tools/train.py', config, '--work-dir', train_dir], env)
    ckpt_file = osp.join(train_dir, 'last_checkpoint')
    with open(ckpt_file) as f:
        ckpt = f.read().strip()
    test_dir = osp.join(args.work_dir, 'baseline_test')
    run([py, 'tools/test.py', config, ckpt, '--work-dir', test_dir], env)
    metrics = _latest_metrics(test_dir)

    summary = dict(data_root=args.data_root, config=config, checkpoint=ckpt,
                   metrics=metrics, seconds=round(time.time() - t0, 1))
    tmp = summary_path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(summary, f, indent=1)
    os.replace(tmp, summary_path)
    print('[demo] KittiMetric on the tiny val split:')
    print(json.dumps(metrics, indent=1))
    print(f'[demo] done in {summary["seconds"]} s; summary: {summary_path}')
    return summary


def _latest_metrics(test_dir):
    """The metrics dict mmengine's test loop writes as <timestamp>.json."""
    runs = sorted(d for d in os.listdir(test_dir)
                  if osp.isdir(osp.join(test_dir, d)))
    if not runs:
        raise RuntimeError(f'tools/test.py wrote no run folder in {test_dir}')
    last = osp.join(test_dir, runs[-1])
    jsons = [f for f in os.listdir(last) if f.endswith('.json')]
    if not jsons:
        raise RuntimeError(f'tools/test.py wrote no metrics json in {last}')
    with open(osp.join(last, sorted(jsons)[-1])) as f:
        return json.load(f)


if __name__ == '__main__':
    main()
