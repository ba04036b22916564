"""The likelihood file: .npz without pickle, ids-only and content
fingerprints, legacy pickles only behind allow_pickle=True."""
import hashlib
import json
import os
import os.path as osp
import pickle
import stat

import numpy as np
import pytest

from mmdet3d_equity.utils.fileio import OutputExistsError
from mmdet3d_equity.utils import (LikelihoodFileError, build_record,
                                    convert_likelihood_file,
                                    dataset_fingerprint,
                                    load_likelihood_file,
                                    save_likelihood_file, sample_identity)

SETTINGS = dict(id_key='sample_idx', dataset=dict(type='KittiDataset'),
                embedder=dict(type='x', input_size=(128, 64)), reducer=None,
                clusterer=dict(type='KMeans', n_clusters=3),
                likelihood_def='largest', aggregation=None)


def _record(ids=('0', '1', '2'), lik=(1.0, 0.5, 0.1), extra=None):
    return build_record(
        list(ids), list(lik), [0, 1, 2], [4, 2, 1], id_key='sample_idx',
        dataset=dict(type='KittiDataset'),
        embedder=dict(type='x', input_size=(128, 64)), reducer=None,
        clusterer=dict(type='KMeans', n_clusters=3),
        likelihood_def='largest', extra=extra)


def _members(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _rewrite(path, members):
    with open(path, 'wb') as f:
        np.savez(f, **members)


class _RunsCode:
    """Unpickling this creates the directory ``marker``: what a crafted
    likelihood file could do instead (any code)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker, ))


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_roundtrip_and_no_overwrite(tmp_path, umask_022):
    path = str(tmp_path / 'lik.npz')
    save_likelihood_file(_record(), path)
    # readable by teammates (umask), a plain .npz without pickle
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(_members(path)) == ['cluster_id', 'cluster_size',
                                      'likelihood', 'metadata', 'sample_ids']
    rec = load_likelihood_file(path)
    assert rec['sample_ids'] == ['0', '1', '2']
    np.testing.assert_array_equal(rec['likelihood'], [1.0, 0.5, 0.1])
    assert rec['likelihood'].dtype == np.float64
    assert rec['cluster_id'].dtype == rec['cluster_size'].dtype == np.int64
    assert rec['format_version'] == 2
    assert rec['fingerprint'] == dataset_fingerprint(['0', '1', '2'])
    assert rec['content_fingerprint'] == _record()['content_fingerprint']
    assert rec['embedder'] == dict(type='x', input_size=[128, 64])
    for key in ('dataset', 'reducer', 'clusterer', 'likelihood_def',
                'aggregation', 'versions', 'created', 'extra', 'id_key'):
        assert key in rec
    with pytest.raises(FileExistsError, match='overwrite'):
        save_likelihood_file(_record(lik=(1, 1, 1)), path)
    with pytest.raises(OutputExistsError, match=r'lik\.npz already exists'):
        save_likelihood_file(_record(lik=(1, 1, 1)), path)
    # the existing file is untouched
    np.testing.assert_array_equal(
        load_likelihood_file(path)['likelihood'], [1.0, 0.5, 0.1])
    save_likelihood_file(_record(lik=(1, 1, 1)), path, overwrite=True)
    np.testing.assert_array_equal(
        load_likelihood_file(path)['likelihood'], [1, 1, 1])
    assert sorted(os.listdir(tmp_path)) == ['lik.npz']  # no temp files


def test_fingerprint_is_order_independent_and_sensitive():
    assert dataset_fingerprint(['a', 'b']) == dataset_fingerprint(['b', 'a'])
    assert dataset_fingerprint(['a', 'b']) != dataset_fingerprint(['a', 'c'])
    assert dataset_fingerprint([7, 8]) == dataset_fingerprint(['8', '7'])


def test_content_fingerprint_matches_an_independent_computation():
    rec = _record(ids=('7', '10', '2'), lik=(0.25, 1.0, 1 / 3))
    rows = sorted([['7', 0.25, 0, 4], ['10', 1.0, 1, 2],
                   ['2', 1 / 3, 2, 1]])
    settings = json.loads(json.dumps(SETTINGS))  # tuples as lists
    text = json.dumps(dict(format='mmdet3d_equity.likelihoods', rows=rows,
                           settings=settings), sort_keys=True,
                      separators=(',', ':'))
    assert rec['content_fingerprint'] == hashlib.sha256(
        text.encode('ascii')).hexdigest()
    # the row order does not matter; every value and setting does
    perm = build_record(['2', '7', '10'], [1 / 3, 0.25, 1.0], [2, 0, 1],
                        [1, 4, 2], **SETTINGS)
    assert perm['content_fingerprint'] == rec['content_fingerprint']
    other = [
        _record(ids=('7', '10', '2'), lik=(0.25, 1.0, 0.3333)),
        _record(ids=('7', '10', '2'), lik=(1.0, 0.25, 1 / 3)),  # swapped
        build_record(['7', '10', '2'], [0.25, 1.0, 1 / 3], [0, 1, 2],
                     [4, 2, 1], **dict(SETTINGS, likelihood_def='fraction')),
        build_record(['7', '10', '2'], [0.25, 1.0, 1 / 3], [0, 1, 1],
                     [4, 2, 2], **SETTINGS),
    ]
    assert len({r['content_fingerprint'] for r in other} |
               {rec['content_fingerprint']}) == 5
    # the ids-only fingerprint is the same for all of them
    assert {r['fingerprint'] for r in other} == {rec['fingerprint']}


def test_edited_shuffled_or_resettled_file_is_refused(tmp_path):
    path = str(tmp_path / 'lik.npz')
    save_likelihood_file(_record(), path)
    good = _members(path)

    edits = {}
    m = dict(good, likelihood=np.array([1.0, 0.5, 0.2]))  # one p edited
    edits['edited'] = m
    m = dict(good, likelihood=good['likelihood'][[2, 1, 0]])  # shuffled
    edits['shuffled'] = m
    meta = json.loads(str(good['metadata']))
    meta['clusterer']['n_clusters'] = 4  # a setting changed
    edits['setting'] = dict(good, metadata=np.asarray(json.dumps(meta)))
    for name, members in edits.items():
        bad = str(tmp_path / f'{name}.npz')
        _rewrite(bad, members)
        with pytest.raises(LikelihoodFileError) as e:
            load_likelihood_file(bad)
        assert str(e.value) == (
            f'likelihood file {bad}: content fingerprint does not match the '
            'content: the likelihoods, cluster assignments or settings were '
            'changed after the file was written (or the file is '
            'corrupted); recompute it with tools/compute_likelihoods.py')
    # provenance outside the content (extra) may be annotated
    meta = json.loads(str(good['metadata']))
    meta['extra']['note'] = 'checked by hand'
    ok = str(tmp_path / 'annotated.npz')
    _rewrite(ok, dict(good, metadata=np.asarray(json.dumps(meta))))
    assert load_likelihood_file(ok)['extra'] == {'note': 'checked by hand'}


def test_metadata_arrays_keep_dtype_and_values(tmp_path):
    extra = dict(raw_labels=np.array([0, -1, 2], np.int64),
                 per_camera={'CAM_FRONT': dict(
                     likelihood=np.array([1.0, 0.5, 0.1]),
                     cluster_id=np.array([0, 1, 2], np.int64))},
                 rarest_camera=['CAM_FRONT'] * 3, world_size=np.int64(2),
                 pair=(1, 2.5))
    path = str(tmp_path / 'lik.npz')
    save_likelihood_file(_record(extra=extra), path)
    rec = load_likelihood_file(path)
    ex = rec['extra']
    assert ex['raw_labels'].dtype == np.int64
    np.testing.assert_array_equal(ex['raw_labels'], [0, -1, 2])
    cam = ex['per_camera']['CAM_FRONT']
    np.testing.assert_array_equal(cam['likelihood'], [1.0, 0.5, 0.1])
    assert cam['cluster_id'].dtype == np.int64
    assert ex['rarest_camera'] == ['CAM_FRONT'] * 3
    assert ex['world_size'] == 2 and ex['pair'] == [1, 2.5]
    with pytest.raises(LikelihoodFileError,
                       match=r"record\['extra'\]\['fn'\] is a function"):
        _record(extra=dict(fn=lambda x: x))
    with pytest.raises(LikelihoodFileError,
                       match=r"likelihood record: clusterer\['eps'\] is nan"):
        build_record(['0'], [1.0], [0], [1], **dict(
            SETTINGS, clusterer=dict(type='dbscan', eps=float('nan'))))


def test_bad_files_name_file_and_problem(tmp_path):
    missing = str(tmp_path / 'nope.npz')
    with pytest.raises(LikelihoodFileError, match=r'nope\.npz.*not found'):
        load_likelihood_file(missing)
    with pytest.raises(LikelihoodFileError, match='NaN'):
        _record(lik=(1.0, float('nan'), 0.1))
    path = str(tmp_path / 'nan.npz')
    save_likelihood_file(_record(), path)
    m = _members(path)
    m['likelihood'][1] = np.nan
    _rewrite(path, m)
    with pytest.raises(LikelihoodFileError, match=r'nan\.npz.*NaN'):
        load_likelihood_file(path)
    save_likelihood_file(_record(), path, overwrite=True)
    m = _members(path)
    m['sample_ids'] = np.array(['0', '1', '9'])  # edited ids
    _rewrite(path, m)
    with pytest.raises(LikelihoodFileError, match='fingerprint does not '
                       'match its own sample_ids'):
        load_likelihood_file(path)
    _rewrite(path, dict(a=np.arange(3)))
    with pytest.raises(LikelihoodFileError, match='not an mmdet3d-equity'):
        load_likelihood_file(path)
    text = str(tmp_path / 'text.npz')
    with open(text, 'w') as f:
        f.write('sample_id,likelihood\n')
    with pytest.raises(LikelihoodFileError, match='is not a likelihood '
                       'file'):
        load_likelihood_file(text)
    assert osp.isfile(path)


@pytest.mark.parametrize('name', ['crafted.pkl', 'crafted.npz'])
def test_crafted_pickle_is_refused_without_running_code(tmp_path, name):
    """A likelihood file used to be a pickle, loaded before any check: a
    crafted file ran code. Now it is refused before anything in it is
    read, whatever its name; only the explicit opt-in unpickles it."""
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / name)
    with open(path, 'wb') as f:
        pickle.dump(dict(format='mmdet3d_equity.likelihoods',
                         payload=_RunsCode(marker)), f)
    with pytest.raises(LikelihoodFileError) as e:
        load_likelihood_file(path)
    assert not osp.exists(marker)
    assert 'is a pickle' in str(e.value)
    assert 'Pickles can run code when they are loaded' in str(e.value)
    assert 'allow_pickle=True' in str(e.value)
    # the opt-in really unpickles (only for files you trust)
    with pytest.raises(LikelihoodFileError):
        load_likelihood_file(path, allow_pickle=True)
    assert osp.isdir(marker)


def test_npz_with_an_object_array_is_refused_without_running_code(tmp_path):
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / 'obj.npz')
    save_likelihood_file(_record(), path)
    m = _members(path)
    m['array/0'] = np.array([_RunsCode(marker)], dtype=object)
    _rewrite(path, m)  # np.savez pickles the object array
    with pytest.raises(LikelihoodFileError,
                       match='cannot be read without pickle'):
        load_likelihood_file(path)
    assert not osp.exists(marker)


def _legacy_pickle(path, rec):
    """A format_version 1 file as earlier versions wrote it."""
    old = {k: v for k, v in rec.items() if k != 'content_fingerprint'}
    old['format_version'] = 1
    with open(path, 'wb') as f:
        pickle.dump(old, f)


def test_legacy_pickle_needs_the_opt_in_and_converts(tmp_path, umask_022):
    rec = _record(extra=dict(raw_labels=np.array([0, 1, -1])))
    old = str(tmp_path / 'equity_likelihoods.pkl')
    _legacy_pickle(old, rec)
    with pytest.raises(LikelihoodFileError, match=r'is a pickle.*'
                       'convert_likelihoods.py'):
        load_likelihood_file(old)
    loaded = load_likelihood_file(old, allow_pickle=True)
    assert loaded['sample_ids'] == rec['sample_ids']
    np.testing.assert_array_equal(loaded['likelihood'], rec['likelihood'])
    assert loaded['content_fingerprint'] == rec['content_fingerprint']
    new = str(tmp_path / 'equity_likelihoods.npz')
    with pytest.raises(LikelihoodFileError, match='is a pickle'):
        convert_likelihood_file(old, new)
    assert not osp.exists(new)
    convert_likelihood_file(old, new, allow_pickle=True)
    conv = load_likelihood_file(new)
    assert conv['content_fingerprint'] == rec['content_fingerprint']
    assert conv['extra']['converted_from'] == osp.abspath(old)
    np.testing.assert_array_equal(conv['extra']['raw_labels'], [0, 1, -1])
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o644
    # a legacy pickle whose ids were edited is still refused
    bad = dict(rec, sample_ids=['0', '1', '9'])
    _legacy_pickle(old, bad)
    with pytest.raises(LikelihoodFileError, match='fingerprint does not '
                       'match its own sample_ids'):
        load_likelihood_file(old, allow_pickle=True)


def test_sample_identity_prefers_token():
    assert sample_identity(dict(sample_idx=3, token='abc')) == 'abc'
    assert sample_identity(dict(sample_idx=3)) == '3'
    with pytest.raises(KeyError, match='token'):
        sample_identity(dict(lidar_points={}))
