"""Checkpoints of embedders: read through mmengine's public
:class:`~mmengine.runner.CheckpointLoader` (local paths, http(s) URLs and
every scheme registered with it), loaded only when they fit the model
(missing, unexpected or shape-mismatched keys are an error)."""
import os.path as osp
from typing import Dict, Mapping, Sequence

import torch

from ...utils.errors import CheckpointMismatchError, EmbeddingError


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The state dict of a checkpoint (its ``'state_dict'`` / ``'model'``
    entry or the dict itself), a DDP ``module.`` prefix removed."""
    from mmengine.runner import CheckpointLoader
    if '://' not in path and not osp.isfile(path):
        raise EmbeddingError(f'checkpoint not found: {path!r}; give a .pth '
                             'file or an http(s) URL')
    try:
        ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu',
                                                logger='silent')
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


def _head(keys) -> str:
    return ', '.join(keys[:8]) + (f' ... ({len(keys)} in all)'
                                  if len(keys) > 8 else '')


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
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing key(s): {_head(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected key(s): '
                         f'{_head(unexpected)}')
        if shape:
            parts.append(f'{len(shape)} shape mismatch(es): {_head(shape)}')
        raise CheckpointMismatchError(
            f'checkpoint {source} does not match the model built from the '
            f'config: ' + '; '.join(parts) + '. Give the checkpoint trained '
            'with this config (or the config it was trained with).')
    keep = {k: v for k, v in state_dict.items() if k in own}
    model.load_state_dict(keep, strict=True)


def load_backbone_checkpoint(model: torch.nn.Module, path: str) -> None:
    """Load a backbone, classifier or detector checkpoint into a backbone:
    keys under ``backbone.`` are taken when the checkpoint has them,
    classifier / neck / head keys are ignored, anything else must fit."""
    sd = read_state_dict(path)
    others = ('neck.', 'head.', 'bbox_head.', 'fc.', 'data_pre')
    if any(k.startswith('backbone.') for k in sd) and all(
            k.startswith('backbone.') for k in sd
            if not k.startswith(others)):
        sd = {k[len('backbone.'):]: v for k, v in sd.items()
              if k.startswith('backbone.')}
    load_checked(model, sd, path,
                 ignore_unexpected=('fc.', 'head.', 'classifier.', 'neck.',
                                    'bbox_head.', 'data_preprocessor.'))
