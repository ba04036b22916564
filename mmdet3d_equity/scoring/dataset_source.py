"""A split of a dataset config (train, val or test), as scoring sees it.

:class:`Split` builds ``cfg.<split>_dataloader.dataset`` (unwrapping
RepeatDataset / CBGSDataset / ClassBalancedDataset / EquityDataset), lists its
samples by the dataset's own identity (:func:`sample_identity`, the same
identities as the metrics) and resolves camera image paths and LiDAR paths.
Only the training split is clustered; val / test are scored against the
training fit.
"""
import copy
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..utils.errors import ScoringError
from ..utils.identity import (
    dataset_fingerprint,
    id_key_of,
    inner_dataset_cfg,
    raw_data_info,
    sample_identity,
    samples_fingerprint,
)
from ..utils.point_files import check_point_file

SPLITS = ('train', 'val', 'test')

#: image folders (relative to data_root) of the standard on-disk layouts,
#: used only when the config's data_prefix names no image folder (LiDAR-only
#: configs); the choice is logged and recorded.
STANDARD_IMAGE_LAYOUT = {
    'KittiDataset': {'CAM2': 'training/image_2', 'CAM3': 'training/image_3'},
    'NuScenesDataset': {c: f'samples/{c}' for c in (
        'CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK',
        'CAM_BACK_LEFT', 'CAM_BACK_RIGHT')},
}


def check_point_cloud(path: str, load_dim: int, sample_id=None) -> int:
    """Check a float32 point-cloud file (KITTI/nuScenes ``.bin``) before it
    is read; return its number of points. The check training makes too
    (:func:`mmdet3d_equity.utils.point_files.check_point_file`): a missing,
    empty or truncated file is a :class:`ScoringError` naming it."""
    return check_point_file(path, load_dim, sample_id, error=ScoringError)


def _type_name(t) -> str:
    return t if isinstance(t, str) else getattr(t, '__name__', str(t))


def unwrap_dataset_cfg(cfg, split: str = 'train') -> dict:
    """The innermost dataset config of ``cfg.<split>_dataloader`` (its
    wrappers listed under ``'_wrappers'``)."""
    key = f'{split}_dataloader'
    if key not in cfg or cfg[key] is None or 'dataset' not in cfg[key]:
        if split == 'train':
            raise ScoringError(
                'the config has no train_dataloader.dataset: scoring reads '
                'the training split from it; give a training config')
        raise ScoringError(f'the config has no {key}.dataset to score')
    ds, chain = inner_dataset_cfg(cfg[key].dataset)
    if 'datasets' in ds:
        raise ScoringError(
            f'{key}.dataset is a {_type_name(ds.get("type"))} of '
            'several datasets; score each dataset config separately')
    ds['_wrappers'] = chain
    return ds


class Split:
    """The samples of one split of a config.

    Args:
        cfg: an MMEngine config (see :func:`utils.config.load_config`).
        split: 'train' (clustered), 'val' or 'test' (scored against the
            training fit).
        img_prefix: optional override of the image folder, relative to
            data_root or absolute; may contain ``{cam}``.
        logger: an MMLogger (or None).
    """

    def __init__(self, cfg, split: str = 'train',
                 img_prefix: Optional[str] = None, logger=None):
        from mmdet3d.registry import DATASETS
        from mmengine.registry import init_default_scope
        if split not in SPLITS:
            raise ScoringError(f'split must be one of {SPLITS}, got '
                               f'{split!r}')
        self.cfg = cfg
        self.logger = logger
        self.split = split
        key = f'{split}_dataloader'
        ds_cfg = unwrap_dataset_cfg(cfg, split)
        self.wrappers = ds_cfg.pop('_wrappers')
        self.raw_cfg = copy.deepcopy(ds_cfg)
        self.type = _type_name(ds_cfg.get('type'))
        self.train_pipeline_cfg = copy.deepcopy(ds_cfg.get('pipeline', []))
        ds_cfg['pipeline'] = []  # infos only: no augmentation, no db sampler
        if split == 'train' and ds_cfg.get('test_mode', False):
            raise ScoringError(
                'train_dataloader.dataset has test_mode=True; scoring reads '
                'the training split only. Fix the config.')
        ann = ds_cfg.get('ann_file', '')
        root = ds_cfg.get('data_root', '') or ''
        ann_path = ann if osp.isabs(ann) or not root else osp.join(root, ann)
        if ann and not osp.isfile(ann_path):
            if split == 'train':
                raise ScoringError(
                    f'training annotation file not found: {ann_path} (from '
                    'train_dataloader.dataset ann_file/data_root). Create '
                    'the dataset infos or fix data_root.')
            raise ScoringError(f'{split} annotation file not found: '
                               f'{ann_path} (from {key}.dataset)')
        if split == 'train':
            self._check_not_val(cfg, ann_path)
        init_default_scope(cfg.get('default_scope', 'mmdet3d'))
        what = 'training' if split == 'train' else split
        try:
            self.dataset = DATASETS.build(ds_cfg)
        except Exception as e:
            self._raise_if_empty(ann_path, e)
            raise ScoringError(
                f'cannot build the {what} dataset {self.type} from '
                f'{ann_path}: {type(e).__name__}: {e}') from e
        self.data_root = root
        self.ann_file = ann_path
        self._collect()

    def _raise_if_empty(self, ann_path, cause):
        """mmdet3d datasets fail obscurely on an empty info file; say so."""
        import mmengine
        try:
            data = mmengine.load(ann_path)
        except Exception:
            return
        if isinstance(data, dict) and not data.get('data_list', [1]):
            raise ScoringError(
                f'the {self._what} split is empty: {ann_path} has an empty '
                'data_list. Re-create the dataset infos or point '
                f'{self.split}_dataloader.dataset at the right ann_file.') \
                from cause

    @staticmethod
    def _check_not_val(cfg, ann_path):
        val = cfg.get('val_dataloader', None)
        if not val or 'dataset' not in val:
            return
        v = val.dataset
        while 'dataset' in v and isinstance(v['dataset'], dict):
            v = v['dataset']
        vann, vroot = v.get('ann_file', ''), v.get('data_root', '') or ''
        vpath = vann if osp.isabs(vann) or not vroot else osp.join(vroot,
                                                                    vann)
        if vann and osp.abspath(vpath) == osp.abspath(ann_path):
            raise ScoringError(
                f'train and val dataloaders read the same ann_file {ann_path}'
                '; scoring must see the training split only (never val). Use '
                'a config whose train_dataloader reads the training infos.')

    def _collect(self):
        ds = self.dataset
        n = len(ds)
        if n == 0:
            raise ScoringError(
                f'the {self._what} split is empty: {self.type} with ann_file '
                f'{self.ann_file} has no samples. Check the info file and '
                'the config\'s data_root.')
        groups: 'OrderedDict[str, List[dict]]' = OrderedDict()
        for i in range(n):
            # not get_data_info: it overwrites sample_idx with the position
            info = raw_data_info(ds, i)
            groups.setdefault(sample_identity(info), []).append(info)
        self.ids: List[str] = list(groups)
        first = next(iter(groups.values()))[0]
        self.id_key = id_key_of(first)
        self.infos: List[dict] = []
        for sid, infos in groups.items():
            merged = copy.deepcopy(infos[0])
            if len(infos) > 1:  # e.g. nuScenes mv_image_based: one per camera
                imgs = {}
                for inf in infos:
                    imgs.update(inf.get('images', {}))
                merged['images'] = imgs
            self.infos.append(merged)
        self.fingerprint = dataset_fingerprint(self.ids)
        self.use_camera = bool(getattr(ds, 'modality', {}).get('use_camera',
                                                                False))
        self.default_cam = getattr(ds, 'default_cam_key', None)

    def __len__(self):
        return len(self.ids)

    @property
    def _what(self) -> str:
        return 'training' if self.split == 'train' else self.split

    # ------------------------------------------------------------- cameras
    def available_cameras(self) -> List[str]:
        imgs = self.infos[0].get('images', {}) or {}
        return [c for c, v in imgs.items() if isinstance(v, dict)
                and v.get('img_path')]

    def resolve_cameras(self, cameras: Optional[Sequence[str]]) -> List[str]:
        """``None``: the dataset's default camera if it has one, else all
        cameras with images; ``['all']``: all; else the named ones."""
        avail = self.available_cameras()
        if not avail:
            raise ScoringError(
                f'the {self.type} infos in {self.ann_file} have no camera '
                'images (info["images"][CAM]["img_path"]); use the detector '
                'embedder (--detector-config/--detector-checkpoint) instead')
        if cameras is None:
            if len(avail) > 1 and self.type == 'NuScenesDataset':
                return avail
            if self.default_cam in avail:
                return [self.default_cam]
            return avail
        if list(cameras) == ['all']:
            return avail
        unknown = [c for c in cameras if c not in avail]
        if unknown:
            raise ScoringError(f'unknown camera(s) {unknown}; this dataset '
                               f'has {avail}')
        return list(cameras)

    def image_prefix(self, cam: str, override: Optional[str] = None
                     ) -> Optional[str]:
        """Folder the relative img_path of ``cam`` lives in (None when the
        dataset already joined it, i.e. modality use_camera=True)."""
        root = self.data_root
        if override:
            p = override.format(cam=cam)
            return p if osp.isabs(p) or not root else osp.join(root, p)
        if self.use_camera:
            return None
        prefix = dict(self.raw_cfg.get('data_prefix', {}) or {})
        p = prefix.get(cam) or prefix.get('img') or \
            STANDARD_IMAGE_LAYOUT.get(self.type, {}).get(cam)
        if not p:
            raise ScoringError(
                f'no image folder known for camera {cam} of {self.type}: '
                'the config\'s data_prefix names none. Pass --img-prefix '
                '(relative to data_root, may contain {cam}).')
        return p if osp.isabs(p) or not root else osp.join(root, p)

    def image_paths(self, cameras: Sequence[str],
                    img_prefix: Optional[str] = None) -> List[List[str]]:
        """paths[i][c]: the image of sample i, camera cameras[c]."""
        prefixes = {c: self.image_prefix(c, img_prefix) for c in cameras}
        out = []
        for sid, info in zip(self.ids, self.infos):
            row = []
            for c in cameras:
                img = (info.get('images') or {}).get(c) or {}
                rel = img.get('img_path')
                if not rel:
                    raise ScoringError(f'sample {sid!r} has no image for '
                                       f'camera {c}')
                if prefixes[c] is not None and not osp.isabs(rel):
                    rel = osp.join(prefixes[c], rel)
                row.append(rel)
            out.append(row)
        return out

    # --------------------------------------------------------------- lidar
    def lidar_path(self, i: int) -> Optional[str]:
        lp = (self.infos[i].get('lidar_points') or {}).get('lidar_path')
        if lp is None:
            return None
        if not osp.isabs(lp) and not osp.isfile(lp):
            prefix = (self.raw_cfg.get('data_prefix') or {}).get('pts', '')
            lp = osp.join(self.data_root, prefix, lp)
        return lp

    def lidar_load_dim(self) -> int:
        for t in self.train_pipeline_cfg:
            if isinstance(t, dict) and _type_name(t.get('type')) == \
                    'LoadPointsFromFile':
                return int(t.get('load_dim', 4))
        return 5 if self.type == 'NuScenesDataset' else 4

    def load_points(self, i: int) -> np.ndarray:
        path = self.lidar_path(i)
        if path is None:
            raise ScoringError(f'sample {self.ids[i]!r} has no point cloud '
                               '(info["lidar_points"]["lidar_path"])')
        dim = self.lidar_load_dim()
        check_point_cloud(path, dim, self.ids[i])
        return np.fromfile(path, dtype=np.float32).reshape(-1, dim)

    def describe(self) -> Dict:
        return dict(type=self.type, data_root=self.data_root,
                    ann_file=self.ann_file, split=self.split,
                    num_samples=len(self.ids), wrappers=list(self.wrappers),
                    samples_fingerprint=samples_fingerprint(self.dataset))
