"""Appearance embedders (DatasetEquity step 1), one module each, registered
in :data:`~mmdet3d_equity.scoring.registry.EMBEDDERS`:

* ``'image'`` (:mod:`.image_backbone`): an image backbone, one vector per
  camera (several cameras are combined by the camera aggregation);
* ``'detector'`` (:mod:`.detector`): a trained detector's features;
* ``'points'`` (:mod:`.point_stats`): point-cloud statistics, no model.

Shared parts: :mod:`.base` (the interface), :mod:`.loaders` (device,
DataLoader, pooling), :mod:`.image_io`, :mod:`.checkpoint` (mmengine's
CheckpointLoader, key checks).
"""
from ...utils.errors import CheckpointMismatchError, EmbeddingError
from .base import BaseEmbedder
from .checkpoint import load_backbone_checkpoint, load_checked, read_state_dict
from .detector import (
                       DetectorEmbedder,
                       DetectorSampleDataset,
                       collate_pipeline_outputs,
)
from .image_backbone import (
                       DEFAULT_BACKBONE,
                       ImageBackboneEmbedder,
                       ImageSampleDataset,
                       collate_images,
)
from .image_io import (
                       IMAGENET_MEAN,
                       IMAGENET_STD,
                       RESIZE_MODES,
                       decode_image,
                       normalize_images,
                       preprocess,
                       read_file_bytes,
                       read_image,
                       resize_image,
)
from .loaders import (
                       AMP_DTYPES,
                       InferenceOptions,
                       LoadFailure,
                       global_pool,
                       iter_batches,
                       iter_embeddings,
                       make_loader,
)
from .point_stats import PointStatsEmbedder, point_statistics

__all__ = [
    'CheckpointMismatchError', 'EmbeddingError', 'BaseEmbedder',
    'load_backbone_checkpoint', 'load_checked', 'read_state_dict',
    'DetectorEmbedder', 'DetectorSampleDataset', 'collate_pipeline_outputs',
    'DEFAULT_BACKBONE', 'ImageBackboneEmbedder', 'ImageSampleDataset',
    'collate_images', 'IMAGENET_MEAN', 'IMAGENET_STD', 'RESIZE_MODES',
    'decode_image', 'normalize_images', 'preprocess', 'read_file_bytes',
    'read_image', 'resize_image', 'AMP_DTYPES', 'InferenceOptions',
    'LoadFailure', 'global_pool', 'iter_batches', 'iter_embeddings',
    'make_loader', 'PointStatsEmbedder', 'point_statistics'
]
