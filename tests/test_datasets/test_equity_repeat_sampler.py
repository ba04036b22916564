"""EquityRepeatFactorSampler: r_i = max(1, sqrt(t / p_i)) repeats of rare
frames, an epoch of exactly ceil(sum r_i) draws, expected counts, ranks,
claims, bad input, and the config-only option."""
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATA_SAMPLERS, DATASETS, TRANSFORMS
from mmengine.dataset import BaseDataset

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity.datasets import find_equity_dataset
from mmdet3d_equity.utils import build_record, save_likelihood_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FRAME_IDS = [10, 11, 12, 13, 14, 15, 16, 17]
#: likelihood p_i of every frame, and by hand its repeat factor at t = 0.5:
#: sqrt(0.5 / p) where p < 0.5, else 1
P = [1.0, 0.8, 0.5, 0.25, 0.125, 0.02, 0.5, 0.32]
R_T05 = [1.0, 1.0, 1.0, math.sqrt(2.0), 2.0, 5.0, 1.0, 1.25]


@DATASETS.register_module(force=True)
class ToyRepeatDataset(BaseDataset):
    METAINFO = dict(classes=('Car', ))

    def load_data_list(self):
        return [dict(sample_idx=s) for s in FRAME_IDS]


@TRANSFORMS.register_module(force=True)
class ToyRepeatPack:

    def __call__(self, results):
        from mmdet3d.structures import Det3DDataSample
        ds = Det3DDataSample(metainfo=dict(sample_idx=results['sample_idx']))
        return dict(inputs=dict(x=torch.zeros(1)), data_samples=ds)


def _lik_file(path, p=P):
    ids = [str(s) for s in FRAME_IDS]
    rec = build_record(
        ids, list(p), np.arange(len(ids)), np.ones(len(ids), dtype=np.int64),
        id_key='sample_idx',
        dataset=dict(type='ToyRepeatDataset', num_samples=len(ids)),
        embedder=dict(type='test'), reducer=None, clusterer=dict(type='test'),
        likelihood_def='largest')
    save_likelihood_file(rec, str(path), overwrite=True)
    return str(path)


def _dataset(lik, times=1):
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    inner = dict(type='EquityDataset', likelihood_file=lik, dataset=dict(
        type='ToyRepeatDataset', pipeline=[dict(type='ToyRepeatPack')],
        serialize_data=False))
    cfg = inner if times == 1 else dict(type='RepeatDataset', times=times,
                                        dataset=inner)
    return DATASETS.build(cfg)


def _sampler(ds, **kw):
    return DATA_SAMPLERS.build(dict(type='EquityRepeatFactorSampler', **kw),
                               default_args=dict(dataset=ds, seed=3))


def test_repeat_factors_and_epoch_length(tmp_path):
    ds = _dataset(_lik_file(tmp_path / 'l.npz'))
    s = _sampler(ds, threshold=0.5)
    np.testing.assert_allclose(s.factors, R_T05, rtol=1e-12)
    # the epoch: ceil(sum r) = ceil(13.664...) = 14 draws, every epoch
    assert sum(R_T05) == pytest.approx(13.66421356)
    assert len(s) == s.epoch_length == 14
    scaled = np.array(R_T05) * 14 / sum(R_T05)
    seen = np.zeros(len(FRAME_IDS))
    epochs = 4000
    for e in range(epochs):
        s.set_epoch(e)
        idx = list(iter(s))
        assert len(idx) == 14
        c = np.bincount(idx, minlength=len(FRAME_IDS))
        # every frame floor or ceil of its scaled factor
        assert np.all(c >= np.floor(scaled)) and np.all(c <= np.ceil(scaled))
        seen += c
    # in expectation exactly r_i * L / R (systematic sampling)
    np.testing.assert_allclose(seen / epochs, scaled, atol=0.03)
    # the default threshold is the documented 0.5; t = 1 repeats more
    assert _sampler(_dataset(_lik_file(tmp_path / 'm.npz')),
                    threshold=0.5).factors.tolist() == \
        _sampler(_dataset(_lik_file(tmp_path / 'n.npz'))).factors.tolist()
    s1 = _sampler(_dataset(_lik_file(tmp_path / 'o.npz')), threshold=1.0)
    np.testing.assert_allclose(s1.factors,
                               [max(1.0, (1.0 / p)**0.5) for p in P])


def test_deterministic_per_epoch_and_shuffled(tmp_path):
    s = _sampler(_dataset(_lik_file(tmp_path / 'l.npz')))
    s.set_epoch(2)
    a = list(iter(s))
    assert a == list(iter(s))
    s.set_epoch(3)
    assert a != list(iter(s))
    assert a != sorted(a)


def test_wrapped_dataset_and_ranks(tmp_path, monkeypatch):
    """Inside RepeatDataset (p looked up per wrapper index); two ranks take
    alternate draws of one global epoch padded to an even length."""
    from mmdet3d_equity.datasets import equity_repeat_sampler as mod
    ds = _dataset(_lik_file(tmp_path / 'l.npz'), times=2)
    single = _sampler(ds, threshold=0.5)
    np.testing.assert_allclose(single.factors, R_T05 * 2, rtol=1e-12)
    assert single.epoch_length == math.ceil(2 * sum(R_T05)) == 28
    single.set_epoch(1)
    glob_ = list(iter(single))
    parts = []
    for rank in (0, 1):
        monkeypatch.setattr(mod, 'get_dist_info', lambda r=rank: (r, 2))
        find_equity_dataset(ds).release('sampling',
                                        'EquityRepeatFactorSampler')
        s = _sampler(ds, threshold=0.5)
        s.set_epoch(1)
        parts.append(list(iter(s)))
        assert len(s) == 14
    assert parts[0] == glob_[0::2] and parts[1] == glob_[1::2]


def test_claims_and_bad_input(tmp_path):
    lik = _lik_file(tmp_path / 'l.npz')
    ds = _dataset(lik)
    _sampler(ds)
    assert find_equity_dataset(ds)._claims == dict(
        sampling='EquityRepeatFactorSampler')
    with pytest.raises(ValueError, match='would both apply W'):
        find_equity_dataset(ds).claim('loss', 'EquityHook@1')
    for t in (0, 0.0, 1.5, -1, True, '0.5'):
        with pytest.raises(ValueError, match=r'threshold must be a number '
                           r'in \(0, 1\]'):
            _sampler(_dataset(lik), threshold=t)
    zero = _lik_file(tmp_path / 'z.npz', p=[0.0] + P[1:])
    with pytest.raises(ValueError, match=r'likelihoods must be finite and '
                       r'in \(0, 1\]'):
        _sampler(_dataset(zero))
    with pytest.raises(ValueError, match='needs an EquityDataset'):
        DATA_SAMPLERS.build(
            dict(type='EquityRepeatFactorSampler'),
            default_args=dict(dataset=DATASETS.build(dict(
                type='ToyRepeatDataset', pipeline=[])), seed=0))


def test_config_only_option(monkeypatch):
    """The tiny config selects it with config lines only: the sampler and
    the EquityDataset around the base's train dataset, nothing else."""
    from mmengine.config import Config
    monkeypatch.setenv('EQUITY_TINY_KITTI', '/data/tiny_kitti')
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/tiny/pointpillars_tiny-kitti-3class_repeat-factor.py'))
    base = Config.fromfile(osp.join(
        REPO, 'configs/tiny/pointpillars_tiny-kitti-3class.py'))
    assert cfg.train_dataloader.sampler == dict(
        type='EquityRepeatFactorSampler', threshold=0.5)
    ds = cfg.train_dataloader.dataset
    assert ds.type == 'EquityDataset'
    assert ds.dataset == base.train_dataloader.dataset
    assert ds.likelihood_file == '/data/tiny_kitti/equity_likelihoods.npz'
    assert cfg.model == base.model
    # no loss weighting: the one hook binds the sampler to the checkpoints
    assert cfg.custom_hooks == [dict(type='EquitySamplingHook')]


def test_one_log_line_and_the_base_samplers_keys(tmp_path, monkeypatch):
    from mmdet3d_equity.datasets import equity_repeat_sampler as mod
    logged = []
    monkeypatch.setattr(mod, 'print_log',
                        lambda msg, logger=None, level=None:
                        logged.append(msg))
    ds = _dataset(_lik_file(tmp_path / 'l.npz'))
    _sampler(ds, threshold=0.5)
    r = np.array(R_T05)
    assert logged == [
        'EquityRepeatFactorSampler: repeat-factor mode: 14 draws an epoch '
        '(14 per rank, 1 rank(s)) of the 8 train indices, index i repeated '
        f'r_i = max(1, sqrt(0.5 / p_i)) times (mean {r.mean():.4f}, max '
        '5.0000; 4 of 8 indices repeated), seed 3; no loss weighting']
    find_equity_dataset(ds).release('sampling', 'EquityRepeatFactorSampler')
    with pytest.raises(TypeError, match=r"EquityRepeatFactorSampler got "
                       r"\['shuffle'\], inherited from the base config's "
                       r'sampler .*_delete_=True'):
        _sampler(ds, shuffle=True)
