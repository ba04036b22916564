"""Cost of the first KITTI evaluation in a new process: numba compiling
mmdet3d's KITTI evaluation kernels, against loading them from numba's cache
(what KittiCPUMetric does, :func:`cached_kitti_kernels`).

    python tools/benchmark_kitti_eval.py [--data-root DIR] [--frames N]
        [--repeats R] [--json FILE [--overwrite]]

Each measurement is a fresh Python process that evaluates the val split of
a tiny KITTI dataset (ground truth with jittered centres and random scores
as predictions) twice and reports both times:

* compiled -- the stock ``KittiMetric.kitti_evaluate`` (with the CPU
  rotated IoU only), numba compiles every kernel in the process;
* cached, cold -- ``KittiCPUMetric.kitti_evaluate`` with an empty
  ``NUMBA_CACHE_DIR``: compiles and writes the cache;
* cached, warm -- the same with the cache written: loads the kernels.

Alternates compiled / warm ``--repeats`` times, prints the median first-
evaluation time of each, their ratio and whether every value agrees.
The data root defaults to a 64-frame tiny KITTI written to a temporary
directory (about 20 s). Not a test: timings depend on the machine.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

from mmdet3d_equity.apis.errors import one_line_errors


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='KITTI evaluation: numba '
                                'compilation against its cache')
    p.add_argument('--data-root', help='tiny KITTI root (default: generate '
                   'one in a temporary directory)')
    p.add_argument('--frames', type=int, default=64,
                   help='frames of the generated dataset')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--child', choices=['compiled', 'cached'],
                   help=argparse.SUPPRESS)
    from mmdet3d_equity.apis.errors import add_json_output, check_json_output
    add_json_output(p)
    args = p.parse_args(argv)
    if args.child is None:
        check_json_output(p, args)  # before the measurements
    return args


def child(mode: str, data_root: str) -> dict:
    """One process's measurement: seconds of the first and second
    evaluation, and the 3D AP40 values."""
    import mmengine
    import numpy as np

    from mmdet3d_equity.evaluation.kitti_cpu_iou import (
        KittiCPUMetric,
        cpu_rotate_iou,
        kitti_eval_kernels,
        single_numba_thread,
    )
    ann = osp.join(data_root, 'kitti_infos_val.pkl')
    metric = KittiCPUMetric(ann_file=ann)
    gt = [i['kitti_annos'] for i in
          metric.convert_annos_to_kitti_annos(mmengine.load(ann))]
    rng = np.random.default_rng(0)
    dt = []
    for g in gt:
        d = {k: np.array(v) for k, v in g.items()}
        d['score'] = rng.random(len(d['name']))
        d['location'] = d['location'] + rng.normal(0, 0.3,
                                                   d['location'].shape)
        dt.append(d)
    classes = ['Pedestrian', 'Cyclist', 'Car']
    times, values = [], None
    for _ in range(2):
        t = time.perf_counter()
        if mode == 'cached':
            values = metric.kitti_evaluate({'pred_instances_3d': dt}, gt,
                                           metric='bbox', classes=classes,
                                           logger='silent')
        else:  # the stock method, with only the CPU IoU swapped in
            with cpu_rotate_iou(), single_numba_thread():
                values = super(KittiCPUMetric, metric).kitti_evaluate(
                    {'pred_instances_3d': dt}, gt, metric='bbox',
                    classes=classes, logger='silent')
        times.append(time.perf_counter() - t)
    kernels = kitti_eval_kernels()
    return dict(first_s=times[0], second_s=times[1],
                cache_hits=sum(sum(k.stats.cache_hits.values())
                               for k in kernels),
                cache_misses=sum(sum(k.stats.cache_misses.values())
                                 for k in kernels),
                values={k: float(v) for k, v in values.items()
                        if '3D_AP40' in k})


def _run(mode: str, data_root: str, cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, OMP_NUM_THREADS='1')
    out = subprocess.run(
        [sys.executable, '-m', 'mmdet3d_equity.cli.benchmark_kitti_eval',
         '--child', mode, '--data-root', data_root], env=env,
        capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f'benchmark_kitti_eval.py: the {mode} process '
                         f'failed:\n{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


@one_line_errors('benchmark_kitti_eval.py')
def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.data_root)))
        return
    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        data_root = args.data_root
        if data_root is None:
            from equity_tiny_data import create_tiny_kitti
            print(f'writing a {args.frames}-frame tiny KITTI ...', flush=True)
            data_root = create_tiny_kitti(osp.join(tmp, 'kitti'),
                                          num_frames=args.frames,
                                          seed=0)['root']
        cache = osp.join(tmp, 'numba_cache')
        cold = _run('cached', data_root, cache)
        print(f'cached, cold: first evaluation {cold["first_s"]:.2f} s, '
              f'second {cold["second_s"]:.2f} s', flush=True)
        rows = dict(compiled=[], warm=[])
        for r in range(args.repeats):
            for mode, key in (('compiled', 'compiled'), ('cached', 'warm')):
                rows[key].append(_run(mode, data_root, cache))
                print(f'[{r + 1}/{args.repeats}] {key}: first evaluation '
                      f'{rows[key][-1]["first_s"]:.2f} s', flush=True)
    same = all(m['values'] == cold['values']
               for ms in rows.values() for m in ms)
    med = {k: float(np.median([m['first_s'] for m in v]))
           for k, v in rows.items()}
    result = dict(
        data_root=data_root, repeats=args.repeats,
        cold_first_s=cold['first_s'], compiled_first_s=med['compiled'],
        warm_first_s=med['warm'],
        later_evaluation_s=float(np.median(
            [m['second_s'] for v in rows.values() for m in v])),
        saved_per_process_s=med['compiled'] - med['warm'],
        ratio_warm_to_compiled=med['warm'] / med['compiled'],
        values_identical=same, load_average=list(os.getloadavg()))
    print(f'first evaluation in a new process (median of {args.repeats}): '
          f'compiled {med["compiled"]:.2f} s, from the cache '
          f'{med["warm"]:.2f} s (ratio {result["ratio_warm_to_compiled"]:.3f}'
          f', {result["saved_per_process_s"]:.1f} s saved per process); '
          f'a later evaluation {result["later_evaluation_s"]:.2f} s; '
          f'values identical: {same}; load average '
          f'{result["load_average"][0]:.2f}')
    if args.json:
        from mmdet3d_equity.utils.fileio import atomic_write_json
        atomic_write_json(args.json, result, overwrite=args.overwrite)
    if not same:
        sys.exit('benchmark_kitti_eval.py: values differ between the '
                 'compiled and the cached kernels')


if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
