"""A toy KITTI-like dataset, its likelihood files and the EquityDataset
builders shared by the dataset, hook and DDP tests."""

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS, TRANSFORMS
from mmengine.dataset import BaseDataset

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity.datasets import find_equity_dataset
from mmdet3d_equity.utils import build_record, save_likelihood_file

N = 12
# KITTI-like frame numbers that differ from the list positions. mmengine's
# BaseDataset.get_data_info sets info['sample_idx'] to the position in the
# info list (that is what the packed sample carries); the identity is the
# stored frame number, so the wrapper must map position -> frame number.
# Wrappers (Repeat, CBGS) and refetches make the wrapper index differ too.
FRAME_IDS = [3 * k + 7 for k in range(N)]
CLASSES = ('Pedestrian', 'Cyclist', 'Car')


@DATASETS.register_module(force=True)
class ToyEquityDataset(BaseDataset):
    """KITTI-like infos with a 'sample_idx' and a category per sample."""
    METAINFO = dict(classes=CLASSES)

    def __init__(self, ids=FRAME_IDS, with_token=False, lidar_paths=None,
                 **kwargs):
        self._ids = list(ids)
        self._with_token = with_token
        self._lidar_paths = lidar_paths
        super().__init__(**kwargs)

    def load_data_list(self):
        out = []
        for i, s in enumerate(self._ids):
            info = dict(sample_idx=s, cat=i % 3)
            if self._with_token:
                info['token'] = f'tok{s}'
            if self._lidar_paths is not None:
                info['lidar_points'] = dict(lidar_path=self._lidar_paths[i])
            out.append(info)
        return out

    def get_cat_ids(self, idx):
        return [self.get_data_info(idx)['cat']]


@TRANSFORMS.register_module(force=True)
class ToyPack:
    """Mimics Pack3DDetInputs: keeps sample_idx in the metainfo only."""

    def __init__(self, drop=()):
        self.drop = set(drop)

    def __call__(self, results):
        if results['sample_idx'] in self.drop:
            return None  # BaseDataset refetches another random index
        from mmdet3d.structures import Det3DDataSample
        ds = Det3DDataSample(metainfo=dict(sample_idx=results['sample_idx']))
        return dict(inputs=dict(x=torch.zeros(1)), data_samples=ds)


def toy_cfg(drop=(), **kw):
    return dict(type='ToyEquityDataset', pipeline=[dict(type='ToyPack',
                                                        drop=list(drop))],
                serialize_data=False, **kw)


def likelihoods(ids):
    return {str(s): (k % 5) / 4.0 for k, s in enumerate(ids)}


def write_file(path, ids, lik=None, id_key='sample_idx'):
    lik = likelihoods(ids) if lik is None else lik
    ids = [str(s) for s in ids]
    rec = build_record(
        ids, [lik[s] for s in ids], np.arange(len(ids)),
        np.ones(len(ids), dtype=np.int64), id_key=id_key,
        dataset=dict(type='ToyEquityDataset', num_samples=len(ids)),
        embedder=dict(type='test'), reducer=None,
        clusterer=dict(type='test'), likelihood_def='largest')
    save_likelihood_file(rec, str(path), overwrite=True)
    return str(path)


@pytest.fixture
def lik_file(tmp_path):
    return write_file(tmp_path / 'equity_likelihoods.npz', FRAME_IDS)


def _build(cfg, claim=True):
    """Build a dataset config; ``claim``: claim its EquityDataset for
    inspection (what EquityHook / EquityWeightedSampler do in training)."""
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    ds = DATASETS.build(cfg)
    eq = find_equity_dataset(ds)
    if claim and eq is not None:
        eq.claim('inspection', 'test')
    return ds



SAMPLER_LOSS = dict(type='GeneralizedFocalLoss', eta=0.3, gamma=2.0,
                    normalisation='dataset')
