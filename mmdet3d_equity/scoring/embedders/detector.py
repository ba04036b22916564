"""The detector embedder (``'detector'``): the ``extract_feat`` features
of a trained MMDetection3D detector (backbone + neck), fed through the
detector config's own test pipeline and data_preprocessor (points ->
voxelize -> backbone for PointPillars), every output map globally average
pooled and concatenated. Works for LiDAR-only datasets."""
import copy
import inspect
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from ...utils.errors import EmbeddingError, ScoringError
from ..dataset_source import check_point_cloud
from ..registry import EMBEDDERS
from .base import BaseEmbedder
from .checkpoint import load_checked, read_state_dict
from .loaders import LoadFailure, global_pool


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




@EMBEDDERS.register_module('detector')
class DetectorEmbedder(BaseEmbedder):
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
    settings_fields = dict(detector_config='detector_config',
                           detector_checkpoint='checkpoint')

    def __init__(self, detector_config: Optional[str] = None,
                 checkpoint: Optional[str] = None,
                 pipeline: Optional[list] = None, **run):
        from mmdet3d.registry import MODELS
        from mmengine.dataset import Compose
        from mmengine.registry import init_default_scope

        from ...utils.config import ConfigError, load_config
        if not detector_config:
            raise EmbeddingError('--embedder detector needs --detector-config '
                                 'and --detector-checkpoint')
        if not checkpoint:
            raise EmbeddingError('--detector-checkpoint is required with '
                                 '--detector-config (a randomly initialised '
                                 'detector gives meaningless features)')
        run.setdefault('batch_size', 4)
        super().__init__(**run)
        try:
            cfg = load_config(detector_config)
        except ConfigError as e:
            raise EmbeddingError(str(e)) from e
        self.cfg = cfg
        self.config_path = detector_config
        self.checkpoint = checkpoint
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

    def split_dataset(self, split, rows, cameras=None, img_prefix=None):
        return self.dataset([split.infos[i] for i in rows],
                            [split.ids[i] for i in rows], split.dataset)

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

