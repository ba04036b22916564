"""Overhead of dynamic SSB training: iteration time with and without the hook.

    python tools/benchmark_ssb.py [--config CFG] [--iters N] [--batch-size B]
        [--interval K] [--rounds R] [--cfg-options k=v ...]

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
Not a test: timings depend on the machine.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402


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
    return p.parse_args(argv)


def synthetic_batch(seed, batch_size, n_points, pcr):
    import torch
    from mmengine.structures import InstanceData

    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
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


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import torch
    from mmengine.registry import init_default_scope

    import mmdet3d_equity  # noqa: F401
    from mmdet3d.registry import MODELS
    from mmdet3d_equity.apis.config import load_config
    from mmdet3d_equity.models.losses.ssb_loss import HeadSSB
    from mmdet3d_equity.semantic_scale.features import (HeadInputCapture,
                                                        ObjectFeatureSampler,
                                                        find_head)
    from mmdet3d_equity.semantic_scale.store import ClassFeatureStore

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
    main()
