"""Running an embedder: where its model runs (:class:`InferenceOptions`),
the in-order DataLoader that reads samples in worker processes while the
model runs, batch-by-batch embedding and global pooling of feature maps."""
import contextlib
from typing import Dict, Iterator, List, Mapping, Optional

import numpy as np
import torch

from ...utils.errors import EmbeddingError

AMP_DTYPES = ('float16', 'bfloat16')


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


class quiet_mmengine:
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


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size < 1:
        raise EmbeddingError(f'--batch-size must be an integer >= 1, got '
                             f'{batch_size!r}')
    return int(batch_size)
