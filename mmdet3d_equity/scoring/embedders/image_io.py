"""Image I/O of the image embedders: reading and decoding (errors name
the file, the sample and the camera), resizing ('squash' / 'letterbox') and
ImageNet normalisation, on the device and (the reference) in numpy."""
import os.path as osp
from typing import Tuple

import numpy as np
import torch

from ...utils.errors import EmbeddingError

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255
IMAGENET_STD = (58.395, 57.12, 57.375)
RESIZE_MODES = ('squash', 'letterbox')


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
