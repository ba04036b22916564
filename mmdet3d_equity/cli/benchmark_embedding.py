"""Benchmark the embedding stage of scoring: files on disk -> embeddings.

    python tools/benchmark_embedding.py                      # nuScenes-like
    python tools/benchmark_embedding.py --format kitti       # KITTI-like
    python tools/benchmark_embedding.py --device cuda --workers 12 \\
        --batch-size 32 --amp --channels-last --num-images 1536  # on a GPU

Generates realistic inputs in a temporary folder (``--format nuscenes``:
1600 x 900 JPEGs like the nuScenes cameras; ``kitti``: 1242 x 375 PNGs like
KITTI image_2; synthetic road scenes with texture and sensor noise, so the
files have realistic sizes and decoding costs), then measures in one run,
with the scorer's own code (:mod:`mmdet3d_equity.scoring.embedders`):

* the whole pipeline: the scorer's DataLoader (``--workers`` processes
  read, decode and resize) feeding the backbone, files -> embeddings, in
  images/s;
* the backbone's forward alone on the same images pre-decoded,
  pre-normalised and already on the device, same size and batch, in
  images/s, and the
  ratio pipeline / forward (1.0: loading is completely hidden behind the
  model; the target on a GPU is >= 0.9);
* the loading stage alone (the same DataLoader, no model) with each of
  ``--loader-workers`` (default 0 1 2) workers, in images/s, with the
  cores it actually got (CPU seconds of the process and its workers per
  wall second) and the images per CPU second: on a machine shared with
  other jobs the rate scales with the cores the workers get, not with
  their number;
* the time of each stage in the main process: read the file, decode,
  resize (per image), normalise + copy to the device (per batch), forward
  (per batch);
* projected time to embed KITTI's training split (3,712 images) and
  nuScenes' (28,130 samples x 6 cameras = 168,780 images) at the measured
  pipeline rate.

Each measurement is repeated ``--repeats`` times (min / median printed);
the forward-alone and whole-pipeline passes alternate, round by round, and
the ratio is taken per round, so that both see the same machine load
(on a shared machine the load changes wall times by 3x within a minute;
the CPU ms per image are printed as well).
Loading-only rates are given steady (after the first batch, which carries
the start-up of the workers) and overall, over ``--loading-images`` images
(the files cycled); the pipeline and forward rates are over whole passes
(start-up included), and the projections use the pipeline's median.
Files are read from the page cache (they were just written): cold reads
from a disk are not measured. The backbone is randomly initialised
(timing only). Not a test: numbers depend on the machine; the load average
is printed.
"""
import argparse
import os
import os.path as osp
import shutil
import tempfile
import time

from mmdet3d_equity.apis.errors import one_line_errors

FORMATS = {  # (W, H, extension)
    'nuscenes': (1600, 900, '.jpg'),
    'kitti': (1242, 375, '.png'),
}
DATASET_IMAGES = {'KITTI train (3,712 images)': 3712,
                  'nuScenes train (28,130 x 6 = 168,780 images)': 168780}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Embedding throughput: whole pipeline vs backbone '
        'forward alone, loading with 0/1/2 workers, per-stage times')
    p.add_argument('--format', choices=sorted(FORMATS), default='nuscenes')
    p.add_argument('--num-images', type=int, default=48)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--workers', type=int, default=2,
                   help='DataLoader workers of the whole-pipeline run')
    p.add_argument('--loader-workers', type=int, nargs='+',
                   default=[0, 1, 2],
                   help='worker counts of the loading-only runs')
    p.add_argument('--loading-images', type=int, default=192,
                   help='images per loading-only pass (the files cycled)')
    p.add_argument('--depth', type=int, default=50,
                   help='ResNet depth of the backbone (default 50, the '
                   "scorer's default)")
    p.add_argument('--input-size', type=int, nargs='+', default=[384])
    p.add_argument('--resize', choices=['squash', 'letterbox'],
                   default='squash')
    p.add_argument('--device', default='cpu')
    p.add_argument('--amp', action='store_true')
    p.add_argument('--amp-dtype', choices=['float16', 'bfloat16'],
                   default=None)
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--keep-dir', default=None,
                   help='write the images here and keep them (default: a '
                   'temporary folder, removed)')
    from mmdet3d_equity.apis.errors import add_json_output, check_json_output
    add_json_output(p)
    args = p.parse_args(argv)
    check_json_output(p, args)  # before the measurements
    return args


# ------------------------------------------------------------- inputs
def synthetic_scene(w, h, rng):
    """A road scene: sky gradient, road, lane marks, boxes ("vehicles"),
    texture and sensor noise (BGR uint8)."""
    import cv2
    import numpy as np
    img = np.empty((h, w, 3), np.float32)
    horizon = int(h * rng.uniform(0.35, 0.5))
    sky = np.linspace(0, 1, horizon)[:, None, None]
    img[:horizon] = (1 - sky) * rng.uniform(150, 230, 3) + sky * \
        rng.uniform(90, 160, 3)
    ground = np.linspace(0, 1, h - horizon)[:, None, None]
    img[horizon:] = (1 - ground) * rng.uniform(60, 110, 3) + ground * \
        rng.uniform(30, 70, 3)
    for _ in range(int(rng.integers(6, 14))):  # vehicles, poles, signs
        x0 = int(rng.uniform(0, w * 0.9))
        y0 = int(rng.uniform(horizon * 0.6, h * 0.85))
        bw = int(rng.uniform(w * 0.02, w * 0.18))
        bh = int(rng.uniform(h * 0.04, h * 0.3))
        cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh),
                      rng.uniform(0, 255, 3).tolist(), -1)
    for k in range(-3, 4):  # lane marks towards the vanishing point
        cv2.line(img, (w // 2, horizon), (w // 2 + k * w // 4, h),
                 (220, 220, 220), max(2, w // 400))
    tex = cv2.GaussianBlur(rng.normal(0, 20, (h, w)).astype(np.float32),
                           (0, 0), 1.5)[..., None]
    img += tex + rng.normal(0, 4, (h, w, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(folder, fmt, n, seed):
    import cv2
    import numpy as np
    w, h, ext = FORMATS[fmt]
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if ext == '.jpg' else \
        [cv2.IMWRITE_PNG_COMPRESSION, 3]
    for i in range(n):
        path = osp.join(folder, f'{i:06d}{ext}')
        ok, buf = cv2.imencode(ext, synthetic_scene(w, h, rng), params)
        if not ok:
            raise RuntimeError(f'cannot encode {path}')
        with open(path, 'wb') as f:
            f.write(buf.tobytes())
        paths.append(path)
    return paths


# --------------------------------------------------------- measuring
def _sync(device):
    import torch
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def _summary(values):
    import numpy as np
    v = np.asarray(values, dtype=np.float64)
    return dict(min=float(v.min()), median=float(np.median(v)),
                max=float(v.max()), runs=[float(x) for x in v])


class _Rate:
    """images/s of one pass over a stream of batches: overall (start-up
    included) and steady (after the first batch, which carries the
    start-up of the workers and of the model)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.first = None
        self.n = self.n_first = 0

    def add(self, n):
        self.n += n
        if self.first is None:
            self.first = time.perf_counter()
            self.n_first = n

    def done(self):
        end = time.perf_counter()
        steady = (self.n - self.n_first) / (end - self.first) if \
            self.n > self.n_first else float('nan')
        return self.n / (end - self.t0), steady, self.first - self.t0


def _rates(passes):
    overall, steady, first = zip(*passes)
    return dict(overall=_summary(overall), steady=_summary(steady),
                first_batch_s=_summary(first))


def measure_stages(emb, paths):
    """Per-image read / decode / resize times and per-batch normalise +
    copy / forward times, all in the main process; returns the decoded,
    normalised batches (on the device) and the times (ms)."""
    import numpy as np
    import torch

    from mmdet3d_equity.scoring.embedders import (
        decode_image,
        normalize_images,
        read_file_bytes,
        resize_image,
    )
    t_read, t_dec, t_res, small, boxes = [], [], [], [], []
    for p in paths:
        t0 = time.perf_counter()
        buf = read_file_bytes(p)
        t1 = time.perf_counter()
        img = decode_image(buf, p)
        t2 = time.perf_counter()
        s, box = resize_image(img, emb.size, emb.resize)
        t3 = time.perf_counter()
        t_read.append(t1 - t0)
        t_dec.append(t2 - t1)
        t_res.append(t3 - t2)
        small.append(s)
        boxes.append(box)
    bs = emb.batch_size
    t_norm, t_fwd, batches = [], [], []
    for s in range(0, len(paths), bs):
        img = torch.from_numpy(np.stack(small[s:s + bs]))
        box = torch.as_tensor(boxes[s:s + bs])
        if emb.options.pin_memory:
            img = img.pin_memory()
        _sync(emb.device)
        t0 = time.perf_counter()
        x = normalize_images(emb.options.to_device(img), box, emb.resize,
                             emb.options.channels_last)
        _sync(emb.device)
        t1 = time.perf_counter()
        emb.forward_normalized(x).cpu()
        t2 = time.perf_counter()
        t_norm.append(t1 - t0)
        t_fwd.append(t2 - t1)
        batches.append(x)
    ms = 1000.0
    return batches, dict(
        read_ms_per_image=ms * float(np.mean(t_read)),
        decode_ms_per_image=ms * float(np.mean(t_dec)),
        resize_ms_per_image=ms * float(np.mean(t_res)),
        normalize_and_copy_ms_per_batch=ms * float(np.mean(t_norm)),
        forward_ms_per_batch=ms * float(np.mean(t_fwd)),
        batch_size=bs, file_kb_mean=float(np.mean(
            [osp.getsize(p) for p in paths])) / 1024)


def forward_only(emb, batches):
    """(images/s, CPU s) of one pass of the backbone alone over the
    pre-decoded, pre-normalised batches already on the device."""
    n = sum(len(x) for x in batches)
    _sync(emb.device)
    c0, t0 = _cpu_seconds(), time.perf_counter()
    for x in batches:
        out = emb.forward_normalized(x)
    out.cpu()
    _sync(emb.device)
    return n / (time.perf_counter() - t0), _cpu_seconds() - c0


def pipeline(emb, paths):
    """(images/s, CPU s of the process and its workers) of one pass of
    files on disk -> embeddings through the scorer's DataLoader
    (``emb.options.num_workers`` workers), worker start-up included."""
    from mmdet3d_equity.scoring.embedders import iter_embeddings
    ds = emb.dataset([[p] for p in paths], [str(i) for i in
                                            range(len(paths))], ['CAM'])
    c0, t0 = _cpu_seconds(), time.perf_counter()
    n = sum(len(v) for v in iter_embeddings(emb, ds))
    return n / (time.perf_counter() - t0), _cpu_seconds() - c0


def loading_only(emb, paths, workers, repeats, num_images):
    """images/s of the DataLoader alone (read, decode, resize, collate)
    over ``num_images`` images (the files, cycled)."""
    from mmdet3d_equity.scoring.embedders import InferenceOptions, iter_batches
    rows = [[paths[i % len(paths)]] for i in range(num_images)]
    ds = emb.dataset(rows, [str(i) for i in range(num_images)], ['CAM'])
    opts = InferenceOptions('cpu', num_workers=workers)
    passes, cores = [], []
    for _ in range(repeats):
        c0 = _cpu_seconds()
        rate = _Rate()
        for batch in iter_batches(ds, emb.batch_size, opts, emb.collate):
            rate.add(batch['img'].shape[0])
        passes.append(rate.done())
        wall = time.perf_counter() - rate.t0
        cores.append((_cpu_seconds() - c0) / wall)  # workers joined
    out = _rates(passes)
    out['cores_used'] = _summary(cores)
    out['images_per_cpu_second'] = _summary(
        [r[0] / c for r, c in zip(passes, cores)])
    return out


def _cpu_seconds():
    """CPU time of this process and of its finished children (the loader
    workers once they have exited)."""
    import resource
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _fmt(r):
    return (f'steady median {r["steady"]["median"]:.1f} images/s (min '
            f'{r["steady"]["min"]:.1f}); overall median '
            f'{r["overall"]["median"]:.1f} images/s with '
            f'{r["first_batch_s"]["median"]:.2f} s to the first batch; '
            f'{r["cores_used"]["median"]:.2f} cores used (CPU s / wall s), '
            f'{r["images_per_cpu_second"]["median"]:.1f} images per CPU '
            'second')


@one_line_errors('benchmark_embedding.py')
def main(argv=None):
    args = parse_args(argv)
    import torch

    from mmdet3d_equity.scoring.embedders import ImageBackboneEmbedder
    size = args.input_size[0] if len(args.input_size) == 1 else \
        tuple(args.input_size)
    backbone = dict(type='mmdet.ResNet', depth=args.depth, num_stages=4,
                    out_indices=(3, ), frozen_stages=-1,
                    norm_cfg=dict(type='BN', requires_grad=False),
                    norm_eval=True, style='pytorch')
    emb = ImageBackboneEmbedder(
        backbone, input_size=size, resize=args.resize,
        batch_size=args.batch_size, device=args.device,
        num_workers=args.workers, amp=args.amp, amp_dtype=args.amp_dtype,
        channels_last=args.channels_last)
    folder = args.keep_dir or tempfile.mkdtemp(prefix='bench_embedding_')
    try:
        t0 = time.perf_counter()
        paths = write_images(folder, args.format, args.num_images,
                             args.seed)
        w, h, _ = FORMATS[args.format]
        cores = len(os.sched_getaffinity(0))
        head = dict(
            format=args.format, image_size=[w, h], images=len(paths),
            input_size=list(emb.size), batch_size=args.batch_size,
            backbone=f'ResNet-{args.depth}', device=str(emb.device),
            **emb.options.config(), workers=args.workers, cores=cores,
            torch_threads=torch.get_num_threads(),
            load_average_start=list(os.getloadavg()),
            generate_s=time.perf_counter() - t0)
        print(f'{len(paths)} {args.format} images {w}x{h} in {folder} '
              f'({head["generate_s"]:.1f} s to generate); ResNet-'
              f'{args.depth} at {emb.size[0]}x{emb.size[1]}, batch '
              f'{args.batch_size}, {emb.device}, '
              f'{emb.options.config()}; {cores} cores, torch threads '
              f'{head["torch_threads"]}, load average '
              f'{head["load_average_start"][0]:.1f}', flush=True)
        batches, stages = measure_stages(emb, paths)
        print(f'stages (main process): read '
              f'{stages["read_ms_per_image"]:.2f} ms/image (files of '
              f'{stages["file_kb_mean"]:.0f} KB), decode '
              f'{stages["decode_ms_per_image"]:.1f} ms/image, resize '
              f'{stages["resize_ms_per_image"]:.1f} ms/image, normalise + '
              f'copy {stages["normalize_and_copy_ms_per_batch"]:.1f} '
              f'ms/batch, forward {stages["forward_ms_per_batch"]:.1f} '
              f'ms/batch', flush=True)
        loading = {}
        for nw in args.loader_workers:
            r = loading[nw] = loading_only(emb, paths, nw, args.repeats,
                                           args.loading_images)
            print(f'loading only, {nw} worker(s): {_fmt(r)}', flush=True)
        # forward alone and whole pipeline alternate, so that both see the
        # same machine load in each round; the ratio is taken per round
        emb.forward_normalized(batches[0]).cpu()  # warm-up
        fwd, pipe, ratios, cpu_f, cpu_p = [], [], [], [], []
        for r in range(args.repeats):
            rf, cf = forward_only(emb, batches)
            rp, cp = pipeline(emb, paths)
            fwd.append(rf)
            pipe.append(rp)
            ratios.append(rp / rf)
            cpu_f.append(1000.0 * cf / len(paths))
            cpu_p.append(1000.0 * cp / len(paths))
            print(f'round {r + 1}: backbone forward alone {rf:.2f} images/s'
                  f' ({cpu_f[-1]:.0f} CPU ms/image), whole pipeline '
                  f'({args.workers} workers) {rp:.2f} images/s '
                  f'({cpu_p[-1]:.0f} CPU ms/image incl. workers), ratio '
                  f'{rp / rf:.3f}', flush=True)
        fwd, pipe = _summary(fwd), _summary(pipe)
        ratio = _summary(ratios)
        rate = pipe['median']
        print(f'median over {args.repeats} rounds: forward alone '
              f'{fwd["median"]:.2f} images/s, pipeline {rate:.2f} '
              f'images/s, ratio pipeline / forward alone '
              f'{ratio["median"]:.3f} (min {ratio["min"]:.3f}, max '
              f'{ratio["max"]:.3f}; target >= 0.9 on a GPU)')
        projected = {name: n / rate for name, n in DATASET_IMAGES.items()}
        for name, sec in projected.items():
            print(f'projected time, {name}: {sec / 3600:.2f} h '
                  f'({sec:.0f} s) at {rate:.2f} images/s')
        out = dict(head, stages=stages,
                   loading_images_per_s={str(k): v for k, v in
                                         loading.items()},
                   forward_images_per_s=fwd, pipeline_images_per_s=pipe,
                   ratio=ratio, forward_cpu_ms_per_image=_summary(cpu_f),
                   pipeline_cpu_ms_per_image=_summary(cpu_p),
                   projected_seconds=projected,
                   load_average_end=list(os.getloadavg()))
        print(f'load average at the end: {out["load_average_end"][0]:.1f}')
        if args.json:
            from mmdet3d_equity.utils.fileio import atomic_write_json
            atomic_write_json(args.json, out, overwrite=args.overwrite)
        return out
    finally:
        if not args.keep_dir:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
