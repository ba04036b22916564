"""EquityDataset: lookup by the returned sample's identity, wrappers, file
validation at build time, resampling sampler."""
import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset

import mmdet3d_equity  # noqa: F401
from mmdet3d.registry import DATASETS, TRANSFORMS
from mmdet3d_equity import equity_weight
from mmdet3d_equity.scoring import (LikelihoodFileError, build_record,
                                    save_likelihood_file)

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

    def __init__(self, ids=FRAME_IDS, with_token=False, **kwargs):
        self._ids = list(ids)
        self._with_token = with_token
        super().__init__(**kwargs)

    def load_data_list(self):
        out = []
        for i, s in enumerate(self._ids):
            info = dict(sample_idx=s, cat=i % 3)
            if self._with_token:
                info['token'] = f'tok{s}'
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
    return write_file(tmp_path / 'lik.pkl', FRAME_IDS)


def _build(cfg):
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    return DATASETS.build(cfg)


def check_item(item, eta=1.0, gamma=5.0):
    meta = item['data_samples'].metainfo
    ident = str(FRAME_IDS[meta['sample_idx']])  # position -> frame number
    p = likelihoods(FRAME_IDS)[ident]
    assert meta['equity_id'] == ident
    assert meta['equity_likelihood'] == pytest.approx(p, abs=0)
    assert meta['equity_weight'] == pytest.approx(
        equity_weight(p, eta, gamma), rel=1e-15)
    return ident


def test_plain_wrapper_attaches_by_identity(lik_file):
    ds = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     eta=0.5, gamma=2.0, dataset=toy_cfg()))
    assert len(ds) == N
    assert ds.metainfo['classes'] == CLASSES
    seen = [check_item(ds[i], 0.5, 2.0) for i in range(N)]
    assert seen == [str(s) for s in FRAME_IDS]
    # pass-through
    assert ds.get_data_info(3) == ds.dataset.get_data_info(3)
    assert ds.get_cat_ids(4) == [1]


def test_weight_follows_the_refetched_sample(lik_file):
    """The pipeline drops FRAME_IDS[2]: BaseDataset returns another sample,
    whose own likelihood must be attached (not index 2's)."""
    dropped = FRAME_IDS[2]
    ds = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     dataset=toy_cfg(drop=[2])))  # ToyPack sees positions
    got = set()
    for _ in range(20):
        item = ds[2]
        ident = check_item(item)
        assert ident != str(dropped)
        got.add(ident)
    # the refetch really happened with different samples
    assert len(got) > 1
    p2 = likelihoods(FRAME_IDS)[str(dropped)]
    assert any(likelihoods(FRAME_IDS)[g] != p2 for g in got)


def test_inside_and_around_repeat_and_cbgs(lik_file):
    inner = dict(type='EquityDataset', likelihood_file=lik_file,
                 dataset=toy_cfg())
    for cfg in (
            dict(type='RepeatDataset', times=3, dataset=inner),
            dict(type='CBGSDataset', dataset=inner),
            dict(type='EquityDataset', likelihood_file=lik_file,
                 dataset=dict(type='RepeatDataset', times=2,
                              dataset=toy_cfg())),
            dict(type='EquityDataset', likelihood_file=lik_file,
                 dataset=dict(type='CBGSDataset', dataset=toy_cfg())),
    ):
        ds = _build(cfg)
        assert len(ds) > 0
        for i in range(len(ds)):
            ident = check_item(ds[i])
            assert ident == str(FRAME_IDS[ds.get_data_info(i)['sample_idx']])
        # per-index weights follow the (outer) index -> identity mapping
        from mmdet3d_equity.datasets import find_equity_dataset
        eq = find_equity_dataset(ds)
        w = eq.index_weights(ds)
        assert len(w) == len(ds)
        for i in (0, len(ds) - 1):
            sid = str(FRAME_IDS[ds.get_data_info(i)['sample_idx']])
            assert w[i] == pytest.approx(
                equity_weight(likelihoods(FRAME_IDS)[sid]))


def test_token_identity(tmp_path):
    tokens = [f'tok{s}' for s in FRAME_IDS]
    path = write_file(tmp_path / 'tok.pkl', tokens, id_key='token')
    ds = _build(dict(type='EquityDataset', likelihood_file=path,
                     dataset=toy_cfg(with_token=True)))
    for i in range(N):
        meta = ds[i]['data_samples'].metainfo  # only sample_idx packed
        assert meta['equity_id'] == tokens[i]
        assert meta['equity_likelihood'] == likelihoods(tokens)[tokens[i]]


def test_mismatched_fingerprint_fails_at_build(tmp_path):
    other = FRAME_IDS[:-1] + [999]
    path = write_file(tmp_path / 'other.pkl', other)
    with pytest.raises(LikelihoodFileError) as e:
        _build(dict(type='EquityDataset', likelihood_file=path,
                    dataset=toy_cfg()))
    msg = str(e.value)
    assert path in msg and 'fingerprint does not match' in msg
    assert '1 dataset samples missing' in msg


def test_incomplete_file_fails_or_follows_explicit_policy(tmp_path):
    path = write_file(tmp_path / 'part.pkl', FRAME_IDS[:-2])
    with pytest.raises(LikelihoodFileError, match='fingerprint'):
        _build(dict(type='EquityDataset', likelihood_file=path,
                    dataset=toy_cfg()))
    with pytest.raises(LikelihoodFileError) as e:
        _build(dict(type='EquityDataset', likelihood_file=path, strict=False,
                    dataset=toy_cfg()))
    assert path in str(e.value) and '2 of 12 train samples have no ' \
        'likelihood' in str(e.value)
    ds = _build(dict(type='EquityDataset', likelihood_file=path, strict=False,
                     missing='max_weight', dataset=toy_cfg()))
    meta = ds[N - 1]['data_samples'].metainfo
    assert meta['equity_likelihood'] == 0.0 and meta['equity_weight'] == 1.0
    with pytest.raises(ValueError, match='strict=False'):
        _build(dict(type='EquityDataset', likelihood_file=path,
                    missing='max_weight', dataset=toy_cfg()))
    with pytest.raises(ValueError, match='missing must be one of'):
        _build(dict(type='EquityDataset', likelihood_file=path, strict=False,
                    missing='ignore_silently', dataset=toy_cfg()))


def test_kitti_like_ids_also_check_the_info_file(tmp_path):
    # same positions 0..N-1, another info file: refused in strict mode
    rec_ids = [str(s) for s in FRAME_IDS]
    lik = likelihoods(FRAME_IDS)
    rec = build_record(
        rec_ids, [lik[s] for s in rec_ids], np.arange(N), np.ones(N, int),
        id_key='sample_idx', dataset=dict(ann_file='/d/kitti_infos_val.pkl'),
        embedder=dict(type='test'), reducer=None, clusterer=dict(type='t'),
        likelihood_def='largest')
    path = save_likelihood_file(rec, str(tmp_path / 'val.pkl'))
    with pytest.raises(LikelihoodFileError, match='kitti_infos_val.pkl'):
        _build(dict(type='EquityDataset', likelihood_file=path,
                    dataset=toy_cfg(ann_file='kitti_infos_train.pkl')))
    _build(dict(type='EquityDataset', likelihood_file=path, strict=False,
                dataset=toy_cfg(ann_file='kitti_infos_train.pkl')))


def test_superset_file_needs_strict_false(tmp_path):
    path = write_file(tmp_path / 'super.pkl', FRAME_IDS + [97, 98])
    with pytest.raises(LikelihoodFileError, match='2 file samples not in'):
        _build(dict(type='EquityDataset', likelihood_file=path,
                    dataset=toy_cfg()))
    ds = _build(dict(type='EquityDataset', likelihood_file=path, strict=False,
                     dataset=toy_cfg()))
    check_item(ds[0])


def test_nan_and_missing_file_fail_naming_the_file(tmp_path, lik_file):
    with np.load(lik_file, allow_pickle=False) as z:  # edit the .npz
        members = {k: z[k] for k in z.files}
    members['likelihood'][3] = np.nan
    bad = str(tmp_path / 'nan.npz')
    np.savez(bad, **members)
    with pytest.raises(LikelihoodFileError) as e:
        _build(dict(type='EquityDataset', likelihood_file=bad,
                    dataset=toy_cfg()))
    assert bad in str(e.value) and 'NaN' in str(e.value)
    nofile = str(tmp_path / 'nope.pkl')
    with pytest.raises(LikelihoodFileError, match='not found'):
        _build(dict(type='EquityDataset', likelihood_file=nofile,
                    dataset=toy_cfg()))
    with pytest.raises(ValueError, match='eta'):
        _build(dict(type='EquityDataset', likelihood_file=lik_file, eta=-1,
                    dataset=toy_cfg()))


def test_weighted_sampler_frequencies(lik_file):
    from mmdet3d.registry import DATA_SAMPLERS
    ds = _build(dict(type='RepeatDataset', times=2, dataset=dict(
        type='EquityDataset', likelihood_file=lik_file, eta=0.3, gamma=2.0,
        dataset=toy_cfg())))
    sampler = DATA_SAMPLERS.build(
        dict(type='EquityWeightedSampler', num_samples=60000),
        default_args=dict(dataset=ds, seed=0))
    idx = np.array(list(iter(sampler)))
    assert len(idx) == len(sampler) == 60000
    freq = np.bincount(idx, minlength=len(ds)) / len(idx)
    w = np.array([
        equity_weight(likelihoods(FRAME_IDS)[str(
            FRAME_IDS[ds.get_data_info(i)['sample_idx']])], 0.3, 2.0)
        for i in range(len(ds))
    ])
    np.testing.assert_allclose(freq, w / w.sum(), atol=4e-3)
    # deterministic per epoch, different across epochs
    sampler.set_epoch(0)
    a = list(iter(sampler))
    assert a == list(iter(sampler))
    sampler.set_epoch(1)
    assert a != list(iter(sampler))
    with pytest.raises(ValueError, match='needs an EquityDataset'):
        DATA_SAMPLERS.build(dict(type='EquityWeightedSampler'),
                            default_args=dict(dataset=ds.dataset.dataset,
                                              seed=0))
