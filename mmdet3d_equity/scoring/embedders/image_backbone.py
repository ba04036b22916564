"""The image embedder (``'image'``): an image backbone of mmdet/mmdet3d's
MODELS registry built from a config dict (default ResNet-50), optional
checkpoint, ImageNet normalisation, 'squash' or 'letterbox' resizing,
global average pooling of the last stage; one vector per camera."""
import copy
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ...utils.errors import EmbeddingError, ScoringError
from ..registry import EMBEDDERS
from .base import BaseEmbedder
from .checkpoint import load_backbone_checkpoint
from .image_io import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESIZE_MODES,
    normalize_images,
    read_image,
    resize_image,
)
from .loaders import LoadFailure, global_pool, quiet_mmengine

DEFAULT_BACKBONE = dict(type='mmdet.ResNet', depth=50, num_stages=4,
                        out_indices=(3, ), frozen_stages=-1,
                        norm_cfg=dict(type='BN', requires_grad=False),
                        norm_eval=True, style='pytorch')


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


@EMBEDDERS.register_module('image')
class ImageBackboneEmbedder(BaseEmbedder):
    """Embed camera images with an image backbone built from a config dict.

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
        Other run options: :class:`BaseEmbedder`.
    """
    kind = 'image_backbone'
    settings_fields = dict(backbone='backbone', checkpoint='checkpoint',
                           input_size='input_size', resize='resize')
    uses_cameras = True

    def __init__(self, backbone: Optional[Mapping] = None,
                 checkpoint: Optional[str] = None,
                 input_size: Union[int, Tuple[int, int]] = 384,
                 resize: str = 'squash', **run):
        from mmdet3d.registry import MODELS
        from mmengine.registry import init_default_scope
        if resize not in RESIZE_MODES:
            raise EmbeddingError(f'unknown resize mode {resize!r}; choose '
                                 f'one of {RESIZE_MODES}')
        super().__init__(**run)
        self.backbone_cfg = copy.deepcopy(dict(backbone or DEFAULT_BACKBONE))
        self.checkpoint = checkpoint
        self.size = _size2(input_size)
        self.resize = resize
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
            with quiet_mmengine():  # init_weights logs every parameter
                self.model.init_weights()
        if checkpoint:
            load_backbone_checkpoint(self.model, checkpoint)
        elif self.logger is not None:
            self.logger.warning(
                'image embedder: NO CHECKPOINT given, the backbone is '
                'randomly initialised (seed %d). Un-pretrained embeddings are '
                'weak appearance features; pass --checkpoint with ImageNet '
                'weights (or use --detector-config/--detector-checkpoint) '
                'for real use.' % self.seed)
        self.options.prepare_model(self.model)

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
    def resolve_cameras(self, split, cameras):
        return split.resolve_cameras(cameras)

    def dataset(self, paths: Sequence[Sequence[str]], ids: Sequence[str],
                cameras: Sequence[str]) -> ImageSampleDataset:
        """The loader dataset of samples with image ``paths[i][camera]``."""
        return ImageSampleDataset(paths, ids, cameras, self.size, self.resize)

    def split_dataset(self, split, rows, cameras, img_prefix=None):
        paths = split.image_paths(cameras, img_prefix)
        return self.dataset([paths[i] for i in rows],
                            [split.ids[i] for i in rows], cameras)

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
