"""Overhead of dynamic SSB training: iteration time with and without the hook,
and the time of one class-scale update at a realistic size.

    python tools/benchmark_ssb.py [--config CFG] [--iters N] [--batch-size B]
        [--interval K] [--rounds R] [--cfg-options k=v ...]
        [--update-shape C M D] [--update-repeats R] [--push-size K]
        [--update-only] [--json FILE [--overwrite]]

Builds the detector of a config (default: the tiny CPU PointPillars,
configs/tiny/pointpillars_tiny-kitti-3class_ssb.py), wraps its head's
classification loss as the SemanticScaleBalanceHook does, and runs full
training iterations (data preprocessing, forward, loss, backward, SGD step)
on synthetic point clouds with ground-truth boxes:

* baseline -- no feature capture, class weights 1 (the SSB loss then calls
  the stock loss unchanged);
* SSB -- the hook's feature capture every iteration, non-uniform class
  weights (the weighted loss path) and a class-scale update (store ->
  all statistics -> weights) every K iterations.

Rounds alternate baseline / SSB to average out machine noise. Prints the
mean iteration times, the ratio SSB / baseline and the update time.

Then the update at a realistic size (default 10 classes x 4096 stored
features x 256 dims, every class full): a store filled by pushes of random
features (per-class offsets, scales and drifting means; every ring turned
over three times), ``store.compute()`` timed
``--update-repeats`` times (wall clock and process CPU time, min / median
/ max), against the float64 reference (:func:`class_scales` on the stored
features: centring + per-class log-determinant, what an update cost before
the running moments) with the largest relative deviation of S' and of the
weights; and the mean cost of one push of ``--push-size`` features into
the full store (it carries the running-moment updates). The load average
is printed: on a shared machine wall times include waiting for a core.
Not a test: timings depend on the machine.
"""
import argparse
import time

from mmengine.config import DictAction

from mmdet3d_equity.apis.errors import one_line_errors


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='SSB hook overhead benchmark')
    p.add_argument('--config', default='configs/tiny/'
                   'pointpillars_tiny-kitti-3class_ssb.py')
    p.add_argument('--iters', type=int, default=10,
                   help='timed iterations per round and variant')
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--batch-size', type=int, default=2)
    p.add_argument('--interval', type=int, default=10,
                   help='iterations between class-scale updates')
    p.add_argument('--points', type=int, default=8000,
                   help='points per synthetic cloud')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    p.add_argument('--update-shape', type=int, nargs=3,
                   default=[10, 4096, 256], metavar=('C', 'M', 'D'),
                   help='classes, stored features per class, feature dim '
                   'of the update benchmark')
    p.add_argument('--update-repeats', type=int, default=20)
    p.add_argument('--push-size', type=int, default=64,
                   help='features per push in the push-cost measurement')
    p.add_argument('--update-only', action='store_true',
                   help='skip the training-iteration benchmark')
    from mmdet3d_equity.apis.errors import add_json_output, check_json_output
    add_json_output(p)
    args = p.parse_args(argv)
    check_json_output(p, args)  # before the measurements
    return args


def _stats(values):
    import numpy as np
    v = 1000.0 * np.asarray(values)
    return dict(min_ms=float(v.min()), median_ms=float(np.median(v)),
                max_ms=float(v.max()))


def benchmark_update(num_classes=10, capacity=4096, dim=256, repeats=20,
                     push_size=64, seed=0):
    """Time ``ClassFeatureStore.compute`` on a full store against the
    float64 reference; returns a dict of the numbers."""
    import os

    import numpy as np
    import torch

    from mmdet3d_equity.semantic_scale.measures import class_scales
    from mmdet3d_equity.semantic_scale.store import ClassFeatureStore
    g = torch.Generator().manual_seed(seed)
    C, M, D = num_classes, capacity, dim
    store = ClassFeatureStore(C, M)
    offset = torch.randn(C, D, generator=g) * 5
    scale = torch.rand(C, D, generator=g) * 2 + 0.1
    drift = torch.randn(C, D, generator=g)
    # fill as training does: pushes of mixed classes, every ring turned
    # over three times, class means drifting by a few standard deviations
    chunk, total = 512, 3 * C * M
    t0 = time.perf_counter()
    for s in range(0, total, chunk):
        lab = torch.randint(0, C, (chunk, ), generator=g)
        f = torch.randn(chunk, D, generator=g) * scale[lab] + offset[lab] \
            + drift[lab] * (3.0 * s / total)
        store.push(f, lab)
    fill = time.perf_counter() - t0
    store.compute()  # warm-up (and queued moment updates applied)
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        res = store.compute()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    ref_wall = []
    for _ in range(2):
        w0 = time.perf_counter()
        ref = class_scales([store.features(c) for c in range(C)])
        ref_wall.append(time.perf_counter() - w0)
    sp_dev = np.abs(res['scale_prime'] - ref['scale_prime']) / np.maximum(
        1.0, np.abs(ref['scale_prime']))
    w_dev = np.abs(res['weight'] - ref['weight']) / np.abs(ref['weight'])
    pushes = [(torch.randn(push_size, D, generator=g) * 2,
               torch.randint(0, C, (push_size, ), generator=g))
              for _ in range(100)]
    p0, c0 = time.perf_counter(), time.process_time()
    for f, lab in pushes:
        store.push(f, lab)
    push = (time.perf_counter() - p0) / len(pushes)
    push_cpu = (time.process_time() - c0) / len(pushes)
    return dict(
        shape=[C, M, D], torch_threads=torch.get_num_threads(),
        load_average=list(os.getloadavg()), fill_s=fill,
        update_wall=_stats(wall), update_cpu=_stats(cpu),
        reference_wall=_stats(ref_wall),
        max_rel_dev_scale_prime=float(sp_dev.max()),
        max_rel_dev_weight=float(w_dev.max()),
        push_size=push_size, push_mean_ms=1000.0 * push,
        push_mean_cpu_ms=1000.0 * push_cpu)


def print_update(r):
    C, M, D = r['shape']
    print(f'class-scale update, {C} classes x {M} features x {D} dims '
          f'(torch threads {r["torch_threads"]}, load average '
          f'{r["load_average"][0]:.1f}):')
    for k, name in (('update_wall', 'update, wall'),
                    ('update_cpu', 'update, CPU time'),
                    ('reference_wall', 'float64 reference (re-centre + '
                     'log-det per class), wall')):
        v = r[k]
        print(f'  {name}: min {v["min_ms"]:.1f} / median '
              f'{v["median_ms"]:.1f} / max {v["max_ms"]:.1f} ms')
    speedup = r['reference_wall']['median_ms'] / \
        r['update_wall']['median_ms']
    print(f'  speed-up (reference / update, medians): {speedup:.0f}x')
    print("  largest relative deviation from the reference: S' "
          f'{r["max_rel_dev_scale_prime"]:.1e}, weights '
          f'{r["max_rel_dev_weight"]:.1e} (tolerance 1e-9)')
    print(f'  one push of {r["push_size"]} features into the full store '
          f'(running moments included): {r["push_mean_ms"]:.2f} ms wall, '
          f'{r["push_mean_cpu_ms"]:.2f} ms CPU (mean of 100)')


def synthetic_batch(seed, batch_size, n_points, pcr):
    import torch
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    sizes = torch.tensor([[0.8, 0.6, 1.73], [1.76, 0.6, 1.73],
                          [3.9, 1.6, 1.56]])
    x0, y0, z0, x1, y1, z1 = pcr
    points, samples = [], []
    for _ in range(batch_size):
        n = int(torch.randint(3, 12, (1, ), generator=g))
        labels = torch.randint(0, 3, (n, ), generator=g)
        xy = torch.rand(n, 2, generator=g) * torch.tensor(
            [x1 - x0 - 4, y1 - y0 - 4]) + torch.tensor([x0 + 2, y0 + 2])
        boxes = torch.cat([xy, torch.full((n, 1), -1.5), sizes[labels % 3],
                           torch.rand(n, 1, generator=g) * 3], 1)
        pts = torch.rand(n_points, 4, generator=g) * torch.tensor(
            [x1 - x0, y1 - y0, z1 - z0, 1.]) + torch.tensor([x0, y0, z0, 0])
        inst = InstanceData()
        inst.bboxes_3d = LiDARInstance3DBoxes(boxes)
        inst.labels_3d = labels
        ds = Det3DDataSample()
        ds.gt_instances_3d = inst
        ds.set_metainfo(dict(box_type_3d=LiDARInstance3DBoxes))
        points.append(pts)
        samples.append(ds)
    return dict(inputs=dict(points=points), data_samples=samples)


@one_line_errors('benchmark_ssb.py')
def main(argv=None):
    args = parse_args(argv)

    import mmdet3d_equity  # noqa: F401
    C, M, D = args.update_shape
    update = benchmark_update(C, M, D, args.update_repeats, args.push_size)
    print_update(update)
    out = dict(update=update)
    if not args.update_only:
        out.update(benchmark_iterations(args))
    if args.json:
        from mmdet3d_equity.utils.fileio import atomic_write_json
        atomic_write_json(args.json, out, overwrite=args.overwrite)
    return out


def benchmark_iterations(args):
    import numpy as np
    import torch
    from mmdet3d.registry import MODELS
    from mmengine.registry import init_default_scope

    import mmdet3d_equity  # noqa: F401
    from mmdet3d_equity.models.losses.ssb_loss import HeadSSB
    from mmdet3d_equity.semantic_scale.features import (
        HeadInputCapture,
        ObjectFeatureSampler,
        find_head,
    )
    from mmdet3d_equity.semantic_scale.store import ClassFeatureStore
    from mmdet3d_equity.utils.config import load_config

    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet3d'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    # SSB as its hook installs it before training: the head's built loss
    # wrapped (weights 1 = the stock loss)
    losses = [HeadSSB(find_head(model)).loss]
    ncls = losses[0].num_classes
    pcr = list(model.data_preprocessor.voxel_layer.point_cloud_range)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    batches = [synthetic_batch(i, args.batch_size, args.points, pcr)
               for i in range(8)]

    def step(i):
        data = model.data_preprocessor(batches[i % len(batches)], True)
        out = model(**data, mode='loss')
        total = sum(v.sum() if torch.is_tensor(v) else sum(x.sum()
                                                           for x in v)
                    for k, v in out.items() if 'loss' in k)
        opt.zero_grad()
        total.backward()
        opt.step()

    sampler = ObjectFeatureSampler(model, ncls)
    store = ClassFeatureStore(ncls, capacity=1024)
    update_times = []

    def run(ssb: bool):
        capture = None
        if ssb:
            capture = HeadInputCapture(
                model, find_head(model),
                lambda f, s: store.push(*sampler(f, s)))
        t0 = time.perf_counter()
        for i in range(args.iters):
            step(i)
            if ssb and (i + 1) % args.interval == 0:
                u0 = time.perf_counter()
                res = store.compute()
                for m in losses:
                    m.set_class_weights(res['weight'])
                update_times.append(time.perf_counter() - u0)
        dt = (time.perf_counter() - t0) / args.iters
        if capture is not None:
            capture.remove()
        for m in losses:
            m.reset_class_weights()
        return dt

    for i in range(2):  # warm-up
        step(i)
    # fill the store once so that the SSB runs use the weighted loss path
    run(True)
    weights = store.compute()['weight']
    base, ssb = [], []
    for _ in range(args.rounds):
        base.append(run(False))
        for m in losses:
            m.set_class_weights(weights)
        ssb.append(run(True))
    b, s = float(np.mean(base)), float(np.mean(ssb))
    print(f'config: {args.config}')
    print(f'batch size {args.batch_size}, {args.iters} iterations x '
          f'{args.rounds} rounds, update every {args.interval} iterations, '
          f'store dim {store.dim}, per-class counts {store.counts().tolist()}')
    print(f'baseline iteration: {b * 1000:.1f} ms')
    print(f'SSB iteration:      {s * 1000:.1f} ms (capture every iteration '
          f'+ weighted loss + updates)')
    if update_times:
        print(f'one class-scale update: {np.mean(update_times) * 1000:.1f} '
              f'ms')
    over = 100 * (s / b - 1)
    print(f'ratio SSB / baseline: {s / b:.3f} (overhead {over:.1f}%)')
    return dict(baseline=b, ssb=s, ratio=s / b)


if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
