"""Appearance embeddings: one vector per training sample (DatasetEquity
step 1).

Two embedders:

* :class:`ImageBackboneEmbedder` -- any image backbone registered in
  mmdet/mmdet3d built from a config dict (default: ResNet-50), optional
  checkpoint (local path or URL), ImageNet normalisation, 'squash' or
  'letterbox' resizing, global average pooling of the last stage.
* :class:`DetectorEmbedder` -- the backbone (+neck) of a trained
  MMDetection3D detector (``extract_feat``), fed through the detector
  config's own test pipeline and data_preprocessor (points -> voxelize ->
  backbone for PointPillars), every output map globally average pooled and
  concatenated. Works for LiDAR-only datasets.

Both embed through a torch DataLoader (:func:`iter_embeddings`): worker
processes read, decode and resize images (or run the detector's test
pipeline on point clouds) while the model runs; on CUDA batches are pinned
and copied without blocking. Mixed precision (autocast) and channels_last
are options (:class:`InferenceOptions`). Results do not depend on the
number of workers or the batch size.

Checkpoints are checked against the model: missing, unexpected or
shape-mismatched keys are an error (:class:`CheckpointMismatchError`).
"""
import contextlib
import copy
import inspect
import os.path as osp
from typing import (Dict, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import numpy as np
import torch

from .clustering import ScoringError
from ..utils.errors import (CheckpointMismatchError,  # noqa: F401
                            EmbeddingError)

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255
IMAGENET_STD = (58.395, 57.12, 57.375)
DEFAULT_BACKBONE = dict(type='mmdet.ResNet', depth=50, num_stages=4,
                        out_indices=(3, ), frozen_stages=-1,
                        norm_cfg=dict(type='BN', requires_grad=False),
                        norm_eval=True, style='pytorch')
RESIZE_MODES = ('squash', 'letterbox')
AMP_DTYPES = ('float16', 'bfloat16')


# ----------------------------------------------------------- checkpoints
def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Load a checkpoint (local path or http(s) URL) via mmengine and return
    its state dict (``'state_dict'`` / ``'model'`` entry or the dict itself),
    with a DDP ``module.`` prefix removed."""
    from mmengine.runner.checkpoint import _load_checkpoint
    if not path.startswith(('http://', 'https://')) and '://' not in path \
            and not osp.isfile(path):
        raise EmbeddingError(f'checkpoint not found: {path!r}; give a .pth '
                             'file or an http(s) URL')
    try:
        ckpt = _load_checkpoint(path, map_location='cpu')
    except Exception as e:
        raise EmbeddingError(f'cannot read checkpoint {path}: '
                             f'{type(e).__name__}: {e}') from e
    sd = ckpt
    if isinstance(ckpt, Mapping):
        for key in ('state_dict', 'model'):
            if key in ckpt and isinstance(ckpt[key], Mapping):
                sd = ckpt[key]
                break
    if not isinstance(sd, Mapping) or not sd:
        raise EmbeddingError(f'checkpoint {path} holds no state dict')
    if all(k.startswith('module.') for k in sd):
        sd = {k[len('module.'):]: v for k, v in sd.items()}
    return dict(sd)


def load_checked(model: torch.nn.Module, state_dict: Mapping, source: str,
                 ignore_unexpected: Sequence[str] = ()) -> None:
    """Load ``state_dict`` into ``model``; raise CheckpointMismatchError when
    keys are missing, unexpected (except those starting with a prefix in
    ``ignore_unexpected``) or of the wrong shape."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in own and not any(
        k.startswith(p) for p in ignore_unexpected))
    shape = sorted(
        f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model '
        f'{tuple(own[k].shape)}' for k in own
        if k in state_dict and hasattr(state_dict[k], 'shape')
        and tuple(state_dict[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shape:
        def head(xs):
            return ', '.join(xs[:8]) + (f' ... ({len(xs)} in all)'
                                        if len(xs) > 8 else '')
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing key(s): {head(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected key(s): '
                         f'{head(unexpected)}')
        if shape:
            parts.append(f'{len(shape)} shape mismatch(es): {head(shape)}')
        raise CheckpointMismatchError(
            f'checkpoint {source} does not match the model built from the '
            f'config: ' + '; '.join(parts) + '. Give the checkpoint trained '
            'with this config (or the config it was trained with).')
    keep = {k: v for k, v in state_dict.items() if k in own}
    model.load_state_dict(keep, strict=True)


def global_pool(feats) -> torch.Tensor:
    """Globally average pool every (B, C, ...) map in a nested output and
    concatenate along channels -> (B, sum C) float32."""
    maps: List[torch.Tensor] = []

    def walk(x):
        if isinstance(x, torch.Tensor):
            if x.dim() < 3:
                raise EmbeddingError(
                    f'feature of shape {tuple(x.shape)} is not a (B, C, ...) '
                    'map; cannot pool it')
            # pooled in float32 also under autocast
            maps.append(x.flatten(2).float().mean(dim=2))
        elif isinstance(x, (list, tuple)):
            for y in x:
                walk(y)
        elif isinstance(x, Mapping):
            for k in sorted(x):
                walk(x[k])
        elif x is None:
            return
        else:
            raise EmbeddingError(f'cannot pool a feature of type '
                                 f'{type(x).__name__}')
    walk(feats)
    if not maps:
        raise EmbeddingError('the model returned no feature maps')
    return torch.cat(maps, dim=1)


class _quiet_mmengine:
    """Raise the current MMLogger's level to WARNING inside the block."""

    def __enter__(self):
        from mmengine.logging import MMLogger
        self.logger = MMLogger.get_current_instance()
        self.level = self.logger.level
        self.handler_levels = [h.level for h in self.logger.handlers]
        self.logger.setLevel('WARNING')
        for h in self.logger.handlers:
            h.setLevel('WARNING')

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
        for h, lv in zip(self.logger.handlers, self.handler_levels):
            h.setLevel(lv)
        return False


# --------------------------------------------------------------- runtime
class InferenceOptions:
    """Where and how an embedder runs its model, and how batches are loaded.

    Args:
        device: torch device string ('cpu', 'cuda', 'cuda:1').
        num_workers: DataLoader worker processes that read, decode and
            resize while the model runs (0: in the main process).
        amp: run the model under ``torch.autocast`` (mixed precision).
        amp_dtype: 'float16' or 'bfloat16'; default float16 on CUDA,
            bfloat16 on CPU. Only with ``amp``.
        channels_last: convert the model (and image inputs) to the
            channels_last memory format.

    On CUDA, batches are collated into pinned memory and copied with
    ``non_blocking=True``. AMP and channels_last change the embeddings
    within a small tolerance (see docs/likelihoods.md) and are recorded in
    the embedder config; the number of workers and the batch size do not
    change them and are not recorded.
    """

    def __init__(self, device: str = 'cpu', num_workers: int = 0,
                 amp: bool = False, amp_dtype: Optional[str] = None,
                 channels_last: bool = False):
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise EmbeddingError(f'invalid --device {device!r}: {e}') from e
        if self.device.type == 'cuda' and not torch.cuda.is_available():
            raise EmbeddingError(
                f'--device {device} was asked for but CUDA is not available '
                'to this torch build; use --device cpu or install a CUDA '
                'build of torch')
        if isinstance(num_workers, bool) or not isinstance(
                num_workers, (int, np.integer)) or num_workers < 0:
            raise EmbeddingError(f'--workers (num_workers) must be an integer'
                                 f' >= 0, got {num_workers!r}')
        self.num_workers = int(num_workers)
        if amp_dtype is not None and not amp:
            raise EmbeddingError(f'--amp-dtype {amp_dtype} was given without '
                                 '--amp; add --amp to run in mixed precision')
        self.amp = bool(amp)
        if self.amp:
            amp_dtype = amp_dtype or ('float16' if self.device.type == 'cuda'
                                      else 'bfloat16')
            if amp_dtype not in AMP_DTYPES:
                raise EmbeddingError(f'unknown --amp-dtype {amp_dtype!r}; '
                                     f'choose one of {AMP_DTYPES}')
        self.amp_dtype = amp_dtype if self.amp else None
        self.channels_last = bool(channels_last)

    @property
    def pin_memory(self) -> bool:
        return self.device.type == 'cuda'

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type,
                              dtype=getattr(torch, self.amp_dtype))

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=self.pin_memory)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model.eval()

    def config(self) -> Dict:
        """What changes the numbers (recorded with the embeddings)."""
        return dict(precision=f'amp-{self.amp_dtype}' if self.amp
                    else 'float32', channels_last=self.channels_last)


class LoadFailure:
    """A sample a loader worker could not load: carries the error to the
    main process, which raises it (same message for 0 and N workers)."""

    def __init__(self, error: BaseException):
        self.error = error


@contextlib.contextmanager
def _opencv_single_threaded():
    """OpenCV without its thread pool in this process while the block runs.

    A loader worker is forked from this process: if OpenCV's pool exists
    here (cv2 decoded or resized something before, e.g. thumbnails of an
    earlier run), the child inherits a pool whose threads it does not
    have, and the first OpenCV call that touches the pool waits forever.
    With the pool shut down before the fork, the workers run OpenCV
    sequentially (one process per core is the parallelism); the previous
    setting is restored afterwards."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - cv2 comes with mmcv
        yield
        return
    n = cv2.getNumThreads()
    cv2.setNumThreads(0)
    try:
        yield
    finally:
        cv2.setNumThreads(n)


def make_loader(dataset, batch_size: int, options: InferenceOptions,
                collate_fn) -> torch.utils.data.DataLoader:
    """In-order DataLoader over ``dataset`` (never shuffled, nothing
    dropped), with ``options.num_workers`` workers and pinned memory on
    CUDA. Iterate it with :func:`iter_batches`."""
    kw = dict(prefetch_factor=2) if options.num_workers > 0 else {}
    return torch.utils.data.DataLoader(
        dataset, batch_size=int(batch_size), shuffle=False, drop_last=False,
        num_workers=options.num_workers, collate_fn=collate_fn,
        pin_memory=options.pin_memory, **kw)


def iter_batches(dataset, batch_size: int, options: InferenceOptions,
                 collate_fn) -> Iterator:
    """The collated batches of ``dataset`` in order; a sample a worker
    could not load raises its error here (:class:`LoadFailure`)."""
    loader = make_loader(dataset, batch_size, options, collate_fn)
    ctx = _opencv_single_threaded() if options.num_workers > 0 else \
        contextlib.nullcontext()
    with ctx:
        for batch in loader:
            if isinstance(batch, LoadFailure):
                raise batch.error
            yield batch


def iter_embeddings(embedder, dataset) -> Iterator[np.ndarray]:
    """Yield (B, C, D) float32 embeddings of ``dataset`` batch by batch, in
    order. Batch k+1 is handed to the device before batch k's result is
    copied back, so a GPU never waits for the host between batches."""
    pending = None
    for batch in iter_batches(dataset, embedder.batch_size,
                              embedder.options, embedder.collate):
        out = embedder.embed_batch(batch)
        if pending is not None:
            yield pending.cpu().numpy()
        pending = out
    if pending is not None:
        yield pending.cpu().numpy()


# ----------------------------------------------------------------- images
def read_image(path: str, sample_id=None, camera=None) -> np.ndarray:
    """Read an image as BGR uint8 (H, W, 3) or raise EmbeddingError."""
    return decode_image(read_file_bytes(path, sample_id, camera), path,
                        sample_id, camera)


def _where(sample_id, camera) -> str:
    return f' (sample {sample_id!r}, camera {camera})' if sample_id \
        is not None else ''


def read_file_bytes(path: str, sample_id=None, camera=None) -> bytes:
    """The bytes of an image file, or EmbeddingError naming the file."""
    where = _where(sample_id, camera)
    if not osp.isfile(path):
        raise EmbeddingError(
            f'image not found: {path}{where}. Check data_root / data_prefix '
            'of the training dataset, or pass --img-prefix.')
    try:
        with open(path, 'rb') as f:
            buf = f.read()
    except OSError as e:
        raise EmbeddingError(f'cannot read image {path}{where}: '
                             f'{type(e).__name__}: {e}') from e
    if not buf:
        raise EmbeddingError(f'cannot decode image {path}{where}: the file '
                             'is empty (0 bytes). Restore it from the '
                             'dataset archive.')
    return buf


def decode_image(buf: bytes, path: str = '<bytes>', sample_id=None,
                 camera=None) -> np.ndarray:
    """Decode image bytes to BGR uint8 (H, W, 3) (mmcv/cv2)."""
    import mmcv
    where = _where(sample_id, camera)
    try:
        img = mmcv.imfrombytes(buf, flag='color')
    except Exception as e:
        raise EmbeddingError(f'cannot read image {path}{where}: '
                             f'{type(e).__name__}: {e}') from e
    if img is None or img.ndim != 3 or img.size == 0:
        raise EmbeddingError(f'cannot decode image {path}{where}: not a '
                             'readable image file (corrupt or truncated?)')
    return img


def resize_image(img_bgr: np.ndarray, size: Tuple[int, int], resize: str
                 ) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """BGR uint8 -> RGB uint8 (H, W, 3) of ``size`` = (W, H) and the box
    (y0, x0, h, w) of the image in it ('squash': the whole canvas;
    'letterbox': the aspect-preserving fit, centred; the rest is zero here
    and becomes the mean colour, zero after normalisation, in
    :func:`normalize_images`)."""
    import mmcv
    w, h = size
    if resize == 'squash':
        out = mmcv.bgr2rgb(mmcv.imresize(img_bgr, (w, h)))
        return out, (0, 0, h, w)
    if resize == 'letterbox':
        ih, iw = img_bgr.shape[:2]
        s = min(w / iw, h / ih)
        nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
        small = mmcv.bgr2rgb(mmcv.imresize(img_bgr, (nw, nh)))
        out = np.zeros((h, w, 3), np.uint8)
        y0, x0 = (h - nh) // 2, (w - nw) // 2
        out[y0:y0 + nh, x0:x0 + nw] = small
        return out, (y0, x0, nh, nw)
    raise EmbeddingError(f'unknown resize mode {resize!r}; choose one of '
                         f'{RESIZE_MODES}')


def normalize_images(img: torch.Tensor, box: torch.Tensor, resize: str,
                     channels_last: bool = False, mean=IMAGENET_MEAN,
                     std=IMAGENET_STD) -> torch.Tensor:
    """RGB uint8 (N, H, W, 3) (any device) -> normalised float32
    (N, 3, H, W); outside each image's ``box`` (letterbox padding) exactly
    0, the normalised mean colour. Same numbers as :func:`preprocess`."""
    x = img.permute(0, 3, 1, 2).float()  # NHWC memory = channels_last
    m = torch.tensor(mean, dtype=torch.float32, device=x.device)
    s = torch.tensor(std, dtype=torch.float32, device=x.device)
    x = (x - m.view(1, 3, 1, 1)) / s.view(1, 3, 1, 1)
    if resize == 'letterbox':
        box = box.to(x.device)
        h, w = x.shape[2:]
        ys = torch.arange(h, device=x.device).view(1, h, 1)
        xs = torch.arange(w, device=x.device).view(1, 1, w)
        y0, x0, bh, bw = (box[:, i].view(-1, 1, 1) for i in range(4))
        inside = (ys >= y0) & (ys < y0 + bh) & (xs >= x0) & (xs < x0 + bw)
        x = torch.where(inside[:, None], x, torch.zeros((), device=x.device))
    return x.contiguous(memory_format=torch.channels_last if channels_last
                        else torch.contiguous_format)


def preprocess(img_bgr: np.ndarray, size: Tuple[int, int], resize: str,
               mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """BGR uint8 -> normalised RGB float32 (3, H, W) of ``size`` = (W, H),
    in numpy: the reference for what the loader + :func:`normalize_images`
    compute.

    'squash' resizes to (W, H) ignoring the aspect ratio; 'letterbox' keeps
    it, scales the image to fit, and pads the rest with the mean colour
    (zero after normalisation), image centred."""
    import mmcv
    w, h = size
    rgb = img_bgr[..., ::-1]
    if resize == 'squash':
        out = mmcv.imresize(np.ascontiguousarray(rgb), (w, h))
        out = out.astype(np.float32)
    elif resize == 'letterbox':
        ih, iw = rgb.shape[:2]
        s = min(w / iw, h / ih)
        nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
        small = mmcv.imresize(np.ascontiguousarray(rgb), (nw, nh))
        out = np.empty((h, w, 3), np.float32)
        out[:] = np.asarray(mean, np.float32)
        y0, x0 = (h - nh) // 2, (w - nw) // 2
        out[y0:y0 + nh, x0:x0 + nw] = small
    else:
        raise EmbeddingError(f'unknown resize mode {resize!r}; choose one of '
                             f'{RESIZE_MODES}')
    out = (out - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(out.transpose(2, 0, 1))


class ImageSampleDataset(torch.utils.data.Dataset):
    """Item i: the C camera images of sample i, read, decoded and resized
    (in a loader worker): ``dict(img=uint8 (C, H, W, 3) RGB,
    box=int64 (C, 4))``, or a :class:`LoadFailure` naming the file."""

    def __init__(self, paths: Sequence[Sequence[str]], ids: Sequence[str],
                 cameras: Sequence[str], size: Tuple[int, int], resize: str):
        if len(paths) != len(ids):
            raise ValueError('one row of image paths per sample id')
        self.paths = [list(r) for r in paths]
        self.ids = list(ids)
        self.cameras = list(cameras)
        self.size = tuple(size)
        self.resize = resize

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        try:
            imgs, boxes = [], []
            for c, cam in enumerate(self.cameras):
                img = read_image(self.paths[i][c], self.ids[i], cam)
                small, box = resize_image(img, self.size, self.resize)
                imgs.append(small)
                boxes.append(box)
        except ScoringError as e:
            return LoadFailure(e)
        return dict(img=np.stack(imgs), box=np.asarray(boxes, np.int64))


def collate_images(items: Sequence):
    """Stack image items into ``dict(img=(B, C, H, W, 3) uint8 tensor,
    box=(B, C, 4))``; the first :class:`LoadFailure` wins."""
    for it in items:
        if isinstance(it, LoadFailure):
            return it
    return dict(img=torch.from_numpy(np.stack([it['img'] for it in items])),
                box=torch.from_numpy(np.stack([it['box'] for it in items])))


def _size2(size) -> Tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 16:
        raise EmbeddingError(f'input size must be an int or (W, H), each >= '
                             f'16, got {size}')
    return size


def _batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size < 1:
        raise EmbeddingError(f'--batch-size must be an integer >= 1, got '
                             f'{batch_size!r}')
    return int(batch_size)


class ImageBackboneEmbedder:
    """Embed images with an image backbone built from a config dict.

    Args:
        backbone: config dict of any backbone in mmdet/mmdet3d's MODELS
            registry (default :data:`DEFAULT_BACKBONE`, a ResNet-50).
        checkpoint: optional local path or URL; a detector/classifier
            checkpoint whose keys start with ``backbone.`` is accepted;
            classifier-head keys (``fc.``, ``head.``, ...) are ignored; any
            other mismatch is an error.
        input_size: int or (W, H).
        resize: 'squash' or 'letterbox'.
        seed: seeds the random initialisation (used without a checkpoint).
        batch_size: samples per forward (times the number of cameras).
        device, num_workers, amp, amp_dtype, channels_last: see
            :class:`InferenceOptions`.
    """
    kind = 'image_backbone'

    def __init__(self, backbone: Optional[Mapping] = None,
                 checkpoint: Optional[str] = None,
                 input_size: Union[int, Tuple[int, int]] = 384,
                 resize: str = 'squash', seed: int = 0, batch_size: int = 8,
                 device: str = 'cpu', logger=None, num_workers: int = 0,
                 amp: bool = False, amp_dtype: Optional[str] = None,
                 channels_last: bool = False):
        from mmdet3d.registry import MODELS
        from mmengine.registry import init_default_scope
        if resize not in RESIZE_MODES:
            raise EmbeddingError(f'unknown resize mode {resize!r}; choose '
                                 f'one of {RESIZE_MODES}')
        self.options = InferenceOptions(device, num_workers, amp, amp_dtype,
                                        channels_last)
        self.backbone_cfg = copy.deepcopy(dict(backbone or DEFAULT_BACKBONE))
        self.checkpoint = checkpoint
        self.size = _size2(input_size)
        self.resize = resize
        self.seed = int(seed)
        self.batch_size = _batch_size(batch_size)
        self.device = self.options.device
        init_default_scope('mmdet3d')
        torch.manual_seed(self.seed)
        try:
            self.model = MODELS.build(copy.deepcopy(self.backbone_cfg))
        except Exception as e:
            raise EmbeddingError(f'cannot build the image backbone '
                                 f'{self.backbone_cfg}: {type(e).__name__}: '
                                 f'{e}') from e
        if hasattr(self.model, 'init_weights'):
            torch.manual_seed(self.seed)
            with _quiet_mmengine():  # init_weights logs every parameter
                self.model.init_weights()
        if checkpoint:
            sd = read_state_dict(checkpoint)
            if all(k.startswith('backbone.') for k in sd if not k.startswith(
                    ('neck.', 'head.', 'bbox_head.', 'fc.', 'data_pre'))) and \
                    any(k.startswith('backbone.') for k in sd):
                sd = {k[len('backbone.'):]: v for k, v in sd.items()
                      if k.startswith('backbone.')}
            load_checked(self.model, sd, checkpoint,
                         ignore_unexpected=('fc.', 'head.', 'classifier.',
                                            'neck.', 'bbox_head.',
                                            'data_preprocessor.'))
        elif logger is not None:
            logger.warning(
                'image embedder: NO CHECKPOINT given, the backbone is '
                'randomly initialised (seed %d). Un-pretrained embeddings are '
                'weak appearance features; pass --checkpoint with ImageNet '
                'weights (or use --detector-config/--detector-checkpoint) '
                'for real use.' % self.seed)
        self.options.prepare_model(self.model)
        self.dim = None

    def config(self) -> Dict:
        return dict(type=self.kind, backbone=self.backbone_cfg,
                    checkpoint=self.checkpoint,
                    pretrained=bool(self.checkpoint),
                    init_seed=None if self.checkpoint else self.seed,
                    input_size=list(self.size), resize=self.resize,
                    mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD),
                    channel_order='rgb', pooling='global_avg_last_stage',
                    **self.options.config())

    # -------------------------------------------------------- loading
    def dataset(self, paths: Sequence[Sequence[str]], ids: Sequence[str],
                cameras: Sequence[str]) -> ImageSampleDataset:
        """The loader dataset of samples with image ``paths[i][camera]``."""
        return ImageSampleDataset(paths, ids, cameras, self.size, self.resize)

    collate = staticmethod(collate_images)

    # -------------------------------------------------------- forward
    @torch.no_grad()
    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled (N, D) float32 features of normalised (N, 3, H, W) images
        already on the device.

        A single image is forwarded paired with a copy of itself: the CPU
        convolution backend (oneDNN) computes a batch of one with other
        kernels than larger batches (the last bit differs), and the
        embeddings must not depend on the batch size (with this, they are
        bitwise the same for every batch size on the CPU; tested)."""
        n = x.shape[0]
        if n == 1:
            x = torch.cat([x, x])
        with self.options.autocast():
            out = self.model(x)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        vec = global_pool(out)[:n]
        self.dim = int(vec.shape[1])
        return vec

    @torch.no_grad()
    def embed_batch(self, batch: Mapping) -> torch.Tensor:
        """(B, C, D) float32 embeddings (on the device) of a collated batch
        of :class:`ImageSampleDataset` items."""
        img, box = batch['img'], batch['box']
        b, c = img.shape[:2]
        x = self.options.to_device(img.reshape(b * c, *img.shape[2:]))
        x = normalize_images(x, box.reshape(b * c, 4), self.resize,
                             self.options.channels_last)
        return self.forward_normalized(x).reshape(b, c, -1)

    def embed_images(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) embeddings of in-memory BGR images (same computation as
        the loader path, in the main process)."""
        items = []
        for im in images_bgr:
            small, box = resize_image(im, self.size, self.resize)
            items.append(dict(img=small[None], box=np.asarray([box])))
        out = self.embed_batch(collate_images(items))
        return out[:, 0].cpu().numpy()


class DetectorSampleDataset(torch.utils.data.Dataset):
    """Item i: info i fed through the detector's test pipeline (in a loader
    worker), or a :class:`LoadFailure` naming the sample and its file. The
    point cloud is checked first (:func:`check_point_cloud`)."""

    def __init__(self, infos: Sequence[dict], ids: Sequence[str], pipeline,
                 load_dim: Optional[int], box_type_3d=None,
                 box_mode_3d=None):
        if len(infos) != len(ids):
            raise ValueError('one info per sample id')
        self.infos = list(infos)
        self.ids = list(ids)
        self.pipeline = pipeline
        self.load_dim = load_dim
        self.box_type_3d = box_type_3d
        self.box_mode_3d = box_mode_3d

    def __len__(self):
        return len(self.infos)

    def __getitem__(self, i):
        from .dataset_source import check_point_cloud
        d = copy.deepcopy(self.infos[i])
        if self.box_type_3d is not None:
            d['box_type_3d'] = self.box_type_3d
            d['box_mode_3d'] = self.box_mode_3d
        path = (d.get('lidar_points') or {}).get('lidar_path')
        try:
            if path and self.load_dim and not str(path).endswith('.npy') \
                    and '://' not in str(path):
                check_point_cloud(path, self.load_dim, self.ids[i])
            out = self.pipeline(d)
        except ScoringError as e:
            return LoadFailure(e)
        except Exception as e:
            return LoadFailure(EmbeddingError(
                f'the detector test pipeline failed on sample '
                f'{self.ids[i]!r} (point cloud {path}): '
                f'{type(e).__name__}: {e}'))
        if isinstance(out, list):
            out = out[0]
        if out is None:
            return LoadFailure(EmbeddingError(
                f'the detector test pipeline dropped sample {self.ids[i]!r} '
                f'(point cloud {path}); its test pipeline must keep every '
                'sample'))
        return out


def collate_pipeline_outputs(items: Sequence):
    """mmengine's pseudo_collate; the first :class:`LoadFailure` wins."""
    from mmengine.dataset import pseudo_collate
    for it in items:
        if isinstance(it, LoadFailure):
            return it
    return pseudo_collate(list(items))


class DetectorEmbedder:
    """Embed samples with the ``extract_feat`` features of a trained detector.

    Args:
        detector_config: path of the detector's MMDetection3D config.
        checkpoint: its trained checkpoint (local path or URL); must match.
        pipeline: test pipeline to feed samples through; default the
            detector config's ``test_dataloader.dataset.pipeline``.
        batch_size: samples per forward.
        device, num_workers, amp, amp_dtype, channels_last: see
            :class:`InferenceOptions` (the pipeline runs in the workers,
            voxelization and the model in the main process).
    """
    kind = 'detector'

    def __init__(self, detector_config: str, checkpoint: str,
                 pipeline: Optional[list] = None, batch_size: int = 4,
                 device: str = 'cpu', logger=None, num_workers: int = 0,
                 amp: bool = False, amp_dtype: Optional[str] = None,
                 channels_last: bool = False):
        from mmengine.dataset import Compose
        from mmengine.registry import init_default_scope
        from mmdet3d.registry import MODELS
        from ..utils.config import ConfigError, load_config
        if not checkpoint:
            raise EmbeddingError('--detector-checkpoint is required with '
                                 '--detector-config (a randomly initialised '
                                 'detector gives meaningless features)')
        self.options = InferenceOptions(device, num_workers, amp, amp_dtype,
                                        channels_last)
        try:
            cfg = load_config(detector_config)
        except ConfigError as e:
            raise EmbeddingError(str(e)) from e
        self.cfg = cfg
        self.config_path = detector_config
        self.checkpoint = checkpoint
        self.batch_size = _batch_size(batch_size)
        self.device = self.options.device
        init_default_scope(cfg.get('default_scope', 'mmdet3d'))
        self.model = MODELS.build(copy.deepcopy(cfg.model))
        sd = read_state_dict(checkpoint)
        load_checked(self.model, sd, checkpoint)
        self.options.prepare_model(self.model)
        pre = getattr(self.model, 'data_preprocessor', None)
        if self.options.pin_memory and hasattr(pre, '_non_blocking'):
            pre._non_blocking = True  # batches arrive in pinned memory
        if pipeline is None:
            pipeline = self._test_pipeline(cfg)
        self.pipeline_cfg = copy.deepcopy(pipeline)
        self.pipeline = Compose(copy.deepcopy(pipeline))
        self.load_dim = self._load_dim(self.pipeline_cfg)
        self.dim = None
        sig = inspect.signature(self.model.extract_feat)
        self._needs_metas = len([
            p for p in sig.parameters.values()
            if p.default is inspect.Parameter.empty and p.kind in (
                p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 2

    @staticmethod
    def _test_pipeline(cfg):
        for key in ('test_dataloader', 'val_dataloader'):
            dl = cfg.get(key, None)
            if dl and 'dataset' in dl:
                ds = dl.dataset
                while 'pipeline' not in ds and 'dataset' in ds:
                    ds = ds.dataset
                if ds.get('pipeline'):
                    return list(ds.pipeline)
        if cfg.get('test_pipeline'):
            return list(cfg.test_pipeline)
        raise EmbeddingError('the detector config has no test pipeline '
                             '(test_dataloader.dataset.pipeline)')

    @staticmethod
    def _load_dim(pipeline_cfg) -> Optional[int]:
        """load_dim of the pipeline's LoadPointsFromFile (mmdet3d's default
        6 when not given), None without one."""
        for t in pipeline_cfg:
            typ = t.get('type') if isinstance(t, Mapping) else None
            name = typ if isinstance(typ, str) else getattr(typ, '__name__',
                                                            '')
            if name.split('.')[-1] == 'LoadPointsFromFile':
                return int(t.get('load_dim', 6))
        return None

    def config(self) -> Dict:
        return dict(type=self.kind, detector_config=self.config_path,
                    model_type=self.cfg.model.get('type'),
                    checkpoint=self.checkpoint, pretrained=True,
                    pipeline=self.pipeline_cfg,
                    pooling='global_avg_all_extract_feat_maps',
                    **self.options.config())

    # -------------------------------------------------------- loading
    def dataset(self, infos: Sequence[dict], ids: Sequence[str],
                dataset=None) -> DetectorSampleDataset:
        """The loader dataset of ``infos``; ``dataset`` (the training
        dataset) supplies box_type_3d / box_mode_3d."""
        return DetectorSampleDataset(
            infos, ids, self.pipeline, self.load_dim,
            getattr(dataset, 'box_type_3d', None),
            getattr(dataset, 'box_mode_3d', None))

    collate = staticmethod(collate_pipeline_outputs)

    # -------------------------------------------------------- forward
    @torch.no_grad()
    def embed_batch(self, batch) -> torch.Tensor:
        """(B, 1, D) float32 embeddings (on the device) of a collated batch
        of pipeline outputs."""
        data = self.model.data_preprocessor(batch, False)
        inputs, ds = data['inputs'], data['data_samples']
        with self.options.autocast():
            if self._needs_metas:
                feats = self.model.extract_feat(inputs,
                                                [s.metainfo for s in ds])
            else:
                feats = self.model.extract_feat(inputs)
        vec = global_pool(feats)
        self.dim = int(vec.shape[1])
        return vec[:, None, :]

    def embed_infos(self, infos: Sequence[dict], dataset=None) -> np.ndarray:
        """(N, D) embeddings of ``infos`` in the main process."""
        ids = [str(i) for i in range(len(infos))]
        ds = self.dataset(infos, ids, dataset)
        batch = self.collate([ds[i] for i in range(len(ds))])
        if isinstance(batch, LoadFailure):
            raise batch.error
        return self.embed_batch(batch)[:, 0].cpu().numpy()
