"""Appearance embeddings: one vector per training sample (DatasetEquity step 1).

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

Checkpoints are checked against the model: missing, unexpected or
shape-mismatched keys are an error (:class:`CheckpointMismatchError`).
"""
import copy
import inspect
import os.path as osp
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .clustering import ScoringError

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255
IMAGENET_STD = (58.395, 57.12, 57.375)
DEFAULT_BACKBONE = dict(type='mmdet.ResNet', depth=50, num_stages=4,
                        out_indices=(3, ), frozen_stages=-1,
                        norm_cfg=dict(type='BN', requires_grad=False),
                        norm_eval=True, style='pytorch')
RESIZE_MODES = ('squash', 'letterbox')


class EmbeddingError(ScoringError):
    """An input that cannot be embedded, with what to do about it."""


class CheckpointMismatchError(EmbeddingError):
    """A checkpoint whose weights do not fit the model built from the config."""


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
    concatenate along channels -> (B, sum C)."""
    maps: List[torch.Tensor] = []

    def walk(x):
        if isinstance(x, torch.Tensor):
            if x.dim() < 3:
                raise EmbeddingError(
                    f'feature of shape {tuple(x.shape)} is not a (B, C, ...) '
                    'map; cannot pool it')
            maps.append(x.flatten(2).mean(dim=2))
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


# ----------------------------------------------------------------- images
def read_image(path: str, sample_id=None, camera=None) -> np.ndarray:
    """Read an image as BGR uint8 (H, W, 3) or raise EmbeddingError."""
    import mmcv
    where = f' (sample {sample_id!r}, camera {camera})' if sample_id \
        is not None else ''
    if not osp.isfile(path):
        raise EmbeddingError(
            f'image not found: {path}{where}. Check data_root / data_prefix '
            'of the training dataset, or pass --img-prefix.')
    try:
        with open(path, 'rb') as f:
            img = mmcv.imfrombytes(f.read(), flag='color')
    except Exception as e:
        raise EmbeddingError(f'cannot read image {path}{where}: '
                             f'{type(e).__name__}: {e}') from e
    if img is None or img.ndim != 3 or img.size == 0:
        raise EmbeddingError(f'cannot decode image {path}{where}: not a '
                             'readable image file (corrupt or truncated?)')
    return img


def preprocess(img_bgr: np.ndarray, size: Tuple[int, int], resize: str,
               mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """BGR uint8 -> normalised RGB float32 (3, H, W) of ``size`` = (W, H).

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


def _size2(size) -> Tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 16:
        raise EmbeddingError(f'input size must be an int or (W, H), each >= '
                             f'16, got {size}')
    return size


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
        batch_size, device: inference settings.
    """
    kind = 'image_backbone'

    def __init__(self, backbone: Optional[Mapping] = None,
                 checkpoint: Optional[str] = None,
                 input_size: Union[int, Tuple[int, int]] = 384,
                 resize: str = 'squash', seed: int = 0, batch_size: int = 8,
                 device: str = 'cpu', logger=None):
        from mmdet3d.registry import MODELS
        from mmengine.registry import init_default_scope
        if resize not in RESIZE_MODES:
            raise EmbeddingError(f'unknown resize mode {resize!r}; choose '
                                 f'one of {RESIZE_MODES}')
        self.backbone_cfg = copy.deepcopy(dict(backbone or DEFAULT_BACKBONE))
        self.checkpoint = checkpoint
        self.size = _size2(input_size)
        self.resize = resize
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.device = device
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
        self.model.to(device).eval()
        self.dim = None

    def config(self) -> Dict:
        return dict(type=self.kind, backbone=self.backbone_cfg,
                    checkpoint=self.checkpoint,
                    pretrained=bool(self.checkpoint),
                    init_seed=None if self.checkpoint else self.seed,
                    input_size=list(self.size), resize=self.resize,
                    mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD),
                    channel_order='rgb', pooling='global_avg_last_stage')

    @torch.no_grad()
    def embed_images(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        x = np.stack([preprocess(im, self.size, self.resize)
                      for im in images_bgr])
        out = self.model(torch.from_numpy(x).to(self.device))
        if isinstance(out, (list, tuple)):
            out = out[-1]
        vec = global_pool(out).float().cpu().numpy()
        self.dim = vec.shape[1]
        return vec


class DetectorEmbedder:
    """Embed samples with the ``extract_feat`` features of a trained detector.

    Args:
        detector_config: path of the detector's MMDetection3D config.
        checkpoint: its trained checkpoint (local path or URL); must match.
        pipeline: test pipeline to feed samples through; default the
            detector config's ``test_dataloader.dataset.pipeline``.
    """
    kind = 'detector'

    def __init__(self, detector_config: str, checkpoint: str,
                 pipeline: Optional[list] = None, batch_size: int = 4,
                 device: str = 'cpu', logger=None):
        from mmengine.dataset import Compose
        from mmengine.registry import init_default_scope
        from mmdet3d.registry import MODELS
        from ..apis.config import ConfigError, load_config
        if not checkpoint:
            raise EmbeddingError('--detector-checkpoint is required with '
                                 '--detector-config (a randomly initialised '
                                 'detector gives meaningless features)')
        try:
            cfg = load_config(detector_config)
        except ConfigError as e:
            raise EmbeddingError(str(e)) from e
        self.cfg = cfg
        self.config_path = detector_config
        self.checkpoint = checkpoint
        self.batch_size = int(batch_size)
        self.device = device
        init_default_scope(cfg.get('default_scope', 'mmdet3d'))
        self.model = MODELS.build(copy.deepcopy(cfg.model))
        sd = read_state_dict(checkpoint)
        load_checked(self.model, sd, checkpoint)
        self.model.to(device).eval()
        if pipeline is None:
            pipeline = self._test_pipeline(cfg)
        self.pipeline_cfg = copy.deepcopy(pipeline)
        self.pipeline = Compose(copy.deepcopy(pipeline))
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

    def config(self) -> Dict:
        return dict(type=self.kind, detector_config=self.config_path,
                    model_type=self.cfg.model.get('type'),
                    checkpoint=self.checkpoint, pretrained=True,
                    pipeline=self.pipeline_cfg,
                    pooling='global_avg_all_extract_feat_maps')

    @torch.no_grad()
    def embed_infos(self, infos: Sequence[dict], dataset=None) -> np.ndarray:
        from mmengine.dataset import pseudo_collate
        samples = []
        for info in infos:
            d = copy.deepcopy(info)
            if dataset is not None:
                d['box_type_3d'] = dataset.box_type_3d
                d['box_mode_3d'] = dataset.box_mode_3d
            out = self.pipeline(d)
            if isinstance(out, list):
                out = out[0]
            if out is None:
                raise EmbeddingError('the test pipeline dropped a sample')
            samples.append(out)
        data = self.model.data_preprocessor(pseudo_collate(samples), False)
        inputs, ds = data['inputs'], data['data_samples']
        if self._needs_metas:
            feats = self.model.extract_feat(inputs,
                                            [s.metainfo for s in ds])
        else:
            feats = self.model.extract_feat(inputs)
        vec = global_pool(feats).float().cpu().numpy()
        self.dim = vec.shape[1]
        return vec
