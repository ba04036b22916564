"""EquityDataset: lookup by the returned sample's identity, wrappers, file
validation at build time, resampling sampler, the claim that something
applies the likelihoods, point-cloud file checks, id normalisation."""
import numpy as np
import pytest
from _toy_equity import (  # noqa: F401
    CLASSES,
    FRAME_IDS,
    SAMPLER_LOSS,
    N,
    _build,
    lik_file,
    likelihoods,
    toy_cfg,
    write_file,
)

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity import equity_weight
from mmdet3d_equity.datasets import find_equity_dataset
from mmdet3d_equity.utils import (
    LikelihoodFileError,
    build_record,
    save_likelihood_file,
)


def check_item(item):
    meta = item['data_samples'].metainfo
    ident = str(FRAME_IDS[meta['sample_idx']])  # position -> frame number
    p = likelihoods(FRAME_IDS)[ident]
    assert meta['equity_id'] == ident
    assert meta['equity_likelihood'] == pytest.approx(p, abs=0)
    # the dataset carries p only: W belongs to the GeneralizedFocalLoss
    assert 'equity_weight' not in meta
    return ident


def test_plain_wrapper_attaches_by_identity(lik_file):
    ds = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     dataset=toy_cfg()))
    assert len(ds) == N
    assert ds.metainfo['classes'] == CLASSES
    seen = [check_item(ds[i]) for i in range(N)]
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
        # per-index likelihoods follow the (outer) index -> identity mapping
        eq = find_equity_dataset(ds)
        p = eq.index_likelihoods(ds)
        assert len(p) == len(ds)
        for i in range(len(ds)):
            sid = str(FRAME_IDS[ds.get_data_info(i)['sample_idx']])
            assert p[i] == likelihoods(FRAME_IDS)[sid]


def test_token_identity(tmp_path):
    tokens = [f'tok{s}' for s in FRAME_IDS]
    path = write_file(tmp_path / 'tok.npz', tokens, id_key='token')
    ds = _build(dict(type='EquityDataset', likelihood_file=path,
                     dataset=toy_cfg(with_token=True)))
    for i in range(N):
        meta = ds[i]['data_samples'].metainfo  # only sample_idx packed
        assert meta['equity_id'] == tokens[i]
        assert meta['equity_likelihood'] == likelihoods(tokens)[tokens[i]]


def test_mismatched_fingerprint_fails_at_build(tmp_path):
    other = FRAME_IDS[:-1] + [999]
    path = write_file(tmp_path / 'other.npz', other)
    with pytest.raises(LikelihoodFileError) as e:
        _build(dict(type='EquityDataset', likelihood_file=path,
                    dataset=toy_cfg()))
    msg = str(e.value)
    assert path in msg and 'fingerprint does not match' in msg
    assert '1 dataset samples missing' in msg


def test_incomplete_file_fails_or_follows_explicit_policy(tmp_path):
    path = write_file(tmp_path / 'part.npz', FRAME_IDS[:-2])
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
    assert meta['equity_likelihood'] == 0.0  # the largest weight W(0) = 1
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
    path = save_likelihood_file(rec, str(tmp_path / 'val.npz'))
    with pytest.raises(LikelihoodFileError, match='kitti_infos_val.pkl'):
        _build(dict(type='EquityDataset', likelihood_file=path,
                    dataset=toy_cfg(ann_file='kitti_infos_train.pkl')))
    _build(dict(type='EquityDataset', likelihood_file=path, strict=False,
                dataset=toy_cfg(ann_file='kitti_infos_train.pkl')))


def test_superset_file_needs_strict_false(tmp_path):
    path = write_file(tmp_path / 'super.npz', FRAME_IDS + [97, 98])
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
    nofile = str(tmp_path / 'nope.npz')
    with pytest.raises(LikelihoodFileError, match='not found'):
        _build(dict(type='EquityDataset', likelihood_file=nofile,
                    dataset=toy_cfg()))


def test_eta_and_gamma_are_not_dataset_arguments(lik_file):
    """One owner per setting: the wrapper carries p; eta/gamma given to it
    are refused, naming where they belong."""
    for kw in (dict(eta=0.5), dict(gamma=2.0), dict(eta=1.0, gamma=5.0)):
        with pytest.raises(TypeError) as e:
            _build(dict(type='EquityDataset', likelihood_file=lik_file,
                        dataset=toy_cfg(), **kw))
        msg = str(e.value)
        assert f'EquityDataset does not take {sorted(kw)}' in msg
        assert "custom_hooks = [dict(type='EquityHook', loss=dict(" in msg
        assert "type='EquityWeightedSampler'" in msg
    with pytest.raises(TypeError, match=r"unexpected arguments \['wieght'\]"):
        _build(dict(type='EquityDataset', likelihood_file=lik_file,
                    dataset=toy_cfg(), wieght=1))



def test_weighted_sampler_frequencies(lik_file):
    from mmdet3d.registry import DATA_SAMPLERS
    ds = _build(dict(type='RepeatDataset', times=2, dataset=dict(
        type='EquityDataset', likelihood_file=lik_file, dataset=toy_cfg())),
        claim=False)
    sampler = DATA_SAMPLERS.build(
        dict(type='EquityWeightedSampler', num_samples=60000,
             loss=SAMPLER_LOSS),
        default_args=dict(dataset=ds, seed=0))
    # the sampler claimed the wrapper (resampling mode)
    assert find_equity_dataset(ds)._claims == dict(
        sampling='EquityWeightedSampler')
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


# ---------------------------------------------------------------------------
# Nothing applies the likelihoods -> refused
# ---------------------------------------------------------------------------


def test_unclaimed_wrapper_refuses_to_serve(lik_file):
    ds = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     dataset=toy_cfg()), claim=False)
    assert ds._claims == {}
    with pytest.raises(RuntimeError) as e:
        ds[0]
    msg = str(e.value)
    assert 'nothing applies the likelihoods' in msg
    assert 'stock baseline' in msg
    assert "custom_hooks = [dict(type='EquityHook'" in msg
    assert "dict(type='EquityWeightedSampler'" in msg
    ds.claim('inspection', 'notebook')
    check_item(ds[0])


def test_claims_refuse_double_weighting(lik_file):
    ds = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     dataset=toy_cfg()), claim=False)
    ds.claim('loss', 'EquityHook@1')
    ds.claim('loss', 'EquityHook@1')  # the same owner again: fine
    with pytest.raises(ValueError, match='two loss owners'):
        ds.claim('loss', 'EquityHook@2')
    with pytest.raises(ValueError, match='would both apply W'):
        ds.claim('sampling', 'EquityWeightedSampler')
    ds.release('loss', 'EquityHook@1')
    ds.claim('sampling', 'EquityWeightedSampler')
    with pytest.raises(ValueError, match='would both apply W'):
        ds.claim('loss', 'EquityHook@1')
    with pytest.raises(ValueError, match='kind must be one of'):
        ds.claim('weights', 'x')


def test_building_a_hook_claims_nothing(lik_file):
    """No registry written by a constructor: a hook claims the wrapper of
    its own runner's train dataloader when training starts (before_train),
    so a hook built anywhere else leaves a new wrapper unclaimed."""
    from mmdet3d_equity.datasets import equity_dataset
    from mmdet3d_equity.engine.hooks import EquityHook
    EquityHook()
    ds = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     dataset=toy_cfg()), claim=False)
    assert ds._claims == {}
    assert not [k for k, v in vars(equity_dataset).items()
                if isinstance(v, dict) and k.startswith('_')
                and k not in ('__builtins__', )]


def test_wrapping_the_val_split_names_where_it_belongs(lik_file):
    with pytest.raises(ValueError) as e:
        _build(dict(type='EquityDataset', likelihood_file=lik_file,
                    dataset=toy_cfg(test_mode=True,
                                    ann_file='kitti_infos_val.pkl')))
    assert str(e.value) == (
        'EquityDataset wraps a dataset with test_mode=True (the val/test '
        "split, info file 'kitti_infos_val.pkl'): EquityDataset weights "
        'training samples and belongs around train_dataloader.dataset only; '
        'remove it from val_dataloader / test_dataloader.')


def _bound_file(path, root, ann, sizes=None, tmp_path=None):
    """A likelihood file of the toy frames as the scorer records it: data
    root, info file and (with ``sizes``) the samples' content."""
    from mmdet3d_equity.utils import samples_fingerprint
    ids = [str(s) for s in FRAME_IDS]
    lik = likelihoods(FRAME_IDS)
    dataset = dict(type='ToyEquityDataset', data_root=root, ann_file=ann,
                   num_samples=N)
    if sizes is not None:
        leaf = _build(_points_cfg(tmp_path / 'scored', sizes))
        dataset['samples_fingerprint'] = samples_fingerprint(leaf)
    rec = build_record(ids, [lik[s] for s in ids], np.arange(N),
                       np.ones(N, int), id_key='sample_idx', dataset=dataset,
                       embedder=dict(type='test'), reducer=None,
                       clusterer=dict(type='t'), likelihood_def='largest')
    return save_likelihood_file(rec, str(path))


def _points_cfg(folder, sizes, **kw):
    folder.mkdir(exist_ok=True)
    paths = []
    for s, size in zip(FRAME_IDS, sizes):
        p = folder / f'{s:06d}.bin'
        p.write_bytes(b'\0' * size)
        paths.append(str(p))
    return dict(type='ToyEquityDataset', pipeline=[dict(type='ToyPack')],
                serialize_data=False, lidar_paths=paths, **kw)


def test_a_file_of_other_data_with_the_same_frame_ids_is_refused(tmp_path):
    """KITTI-format data numbers frames from 000000: the same ids in another
    data root are other samples. The file records the samples' point-cloud
    sizes; another dataset with the same ids is refused, naming both
    sides; the same content under another root is accepted."""
    scored = [16 * (100 + k) for k in range(N)]
    path = _bound_file(tmp_path / 'a.npz', '/data/kitti_a/',
                       '/data/kitti_a/kitti_infos_train.pkl', scored,
                       tmp_path)
    other = [16 * (200 + k) for k in range(N)]
    cfg = _points_cfg(tmp_path / 'b', other, data_root='/data/kitti_b/',
                      ann_file='kitti_infos_train.pkl')
    with pytest.raises(LikelihoodFileError) as e:
        _build(dict(type='EquityDataset', likelihood_file=path, dataset=cfg))
    assert str(e.value) == (
        f'likelihood file {path} belongs to other data: it was computed for '
        "data_root '/data/kitti_a/', info file "
        "'/data/kitti_a/kitti_infos_train.pkl', the train dataset reads "
        "data_root '/data/kitti_b/', info file "
        "'/data/kitti_b/kitti_infos_train.pkl', and the samples' point-cloud "
        'files differ (samples_fingerprint); KITTI-format data numbers '
        'frames from 000000, so equal sample ids prove nothing. Recompute it '
        'for this data (python tools/compute_likelihoods.py CONFIG --out '
        'FILE) and point likelihood_file at it, or set '
        'EquityDataset(strict=False).')
    _build(dict(type='EquityDataset', likelihood_file=path, dataset=cfg,
                strict=False))  # the explicit opt-out, logged
    # one file of one sample changed is enough
    one = list(scored)
    one[4] += 16
    with pytest.raises(LikelihoodFileError, match='belongs to other data'):
        _build(dict(type='EquityDataset', likelihood_file=path,
                    dataset=_points_cfg(tmp_path / 'c', one)))
    # the same content moved to another root: accepted
    moved = _points_cfg(tmp_path / 'd', scored, data_root='/data/moved/')
    ds = _build(dict(type='EquityDataset', likelihood_file=path,
                     dataset=moved))
    check_item(ds[0])


def test_files_without_content_are_bound_by_root_and_info_file(tmp_path):
    path = _bound_file(tmp_path / 'a.npz', '/data/kitti_a/',
                       '/data/kitti_a/kitti_infos_train.pkl')
    with pytest.raises(LikelihoodFileError, match=r"and the data_root and "
                       r"ann_file differ; KITTI-format"):
        _build(dict(type='EquityDataset', likelihood_file=path,
                    dataset=toy_cfg(data_root='/data/kitti_b/',
                                    ann_file='kitti_infos_train.pkl')))
    ds = _build(dict(type='EquityDataset', likelihood_file=path,
                     dataset=toy_cfg(data_root='/data/kitti_a',
                                     ann_file='kitti_infos_train.pkl')))
    check_item(ds[0])


# ---------------------------------------------------------------------------
# Point-cloud files of the samples
# ---------------------------------------------------------------------------
def _point_cfg(tmp_path, sizes):
    paths = []
    for s, size in zip(FRAME_IDS, sizes):
        p = tmp_path / f'{s:06d}.bin'
        p.write_bytes(b'\0' * size)
        paths.append(str(p))
    pipeline = [dict(type='LoadPointsFromFile', coord_type='LIDAR',
                     load_dim=4, use_dim=4), dict(type='ToyPack')]
    return dict(type='ToyEquityDataset', pipeline=pipeline,
                serialize_data=False, lidar_paths=paths), paths


def test_zero_byte_and_truncated_point_clouds_are_named(tmp_path, lik_file):
    sizes = [16 * 100] * N
    cfg, paths = _point_cfg(tmp_path, sizes)
    _build(dict(type='EquityDataset', likelihood_file=lik_file,
                dataset=cfg))  # all complete: accepted
    sizes[2], sizes[5] = 0, 16 * 100 - 6
    cfg, paths = _point_cfg(tmp_path, sizes)
    with pytest.raises(ValueError) as e:
        _build(dict(type='EquityDataset', likelihood_file=lik_file,
                    dataset=cfg))
    msg = str(e.value)
    assert type(e.value).__name__ == 'SampleFileError'
    assert f'2 of {N} point-cloud files' in msg and lik_file in msg
    assert f'{paths[2]} (sample {FRAME_IDS[2]}) is empty (0 bytes)' in msg
    assert (f'{paths[5]} (sample {FRAME_IDS[5]}) is truncated or not a '
            '4-value float32 point file: 1594 bytes is not a multiple of the '
            '16-byte point record (load_dim=4)') in msg
    (tmp_path / f'{FRAME_IDS[2]:06d}.bin').unlink()
    with pytest.raises(ValueError, match='does not exist'):
        _build(dict(type='EquityDataset', likelihood_file=lik_file,
                    dataset=cfg))


# ---------------------------------------------------------------------------
# Integer vs string sample ids
# ---------------------------------------------------------------------------
def test_int_and_str_ids_are_one_identity(lik_file, monkeypatch):
    """A record holding the ids as ints (KITTI infos use ints) matches the
    dataset's string identities; lookups accept either."""
    from mmdet3d_equity.datasets import equity_dataset
    from mmdet3d_equity.utils import load_likelihood_file

    def load_int_ids(path, **kw):
        rec = dict(load_likelihood_file(lik_file))
        rec['sample_ids'] = [int(i) for i in rec['sample_ids']]
        return rec

    monkeypatch.setattr(equity_dataset, 'load_likelihood_file', load_int_ids)
    ds = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     dataset=toy_cfg()))
    for i in range(N):
        check_item(ds[i])
    lik = likelihoods(FRAME_IDS)
    assert ds.likelihood_of(FRAME_IDS[3]) == lik[str(FRAME_IDS[3])]
    assert ds.likelihood_of(str(FRAME_IDS[3])) == lik[str(FRAME_IDS[3])]


def test_ids_differing_in_form_are_explained(tmp_path):
    padded = [f'{s:06d}' for s in FRAME_IDS]
    path = write_file(tmp_path / 'padded.npz', padded)
    with pytest.raises(LikelihoodFileError) as e:
        _build(dict(type='EquityDataset', likelihood_file=path,
                    dataset=toy_cfg()))
    msg = str(e.value)
    assert "The ids differ only in form (dataset '10', file '000010')" in msg
    assert "so 7 and '7' are one sample but '000007' is another" in msg
