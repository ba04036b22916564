"""The likelihood file: .npz without pickle, ids-only and content
fingerprints, pickles never read, paths that are no file named for what
they are, and a reader that turns any bytes into a record or one
LikelihoodFileError (hypothesis)."""
import hashlib
import json
import os
import os.path as osp
import pickle
import stat

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmdet3d_equity.utils import (
    LikelihoodFileError,
    build_record,
    dataset_fingerprint,
    load_likelihood_file,
    sample_identity,
    save_likelihood_file,
)
from mmdet3d_equity.utils.fileio import OutputExistsError

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
    """A pickle is refused before anything in it is read, whatever its
    name: loading it could run code."""
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / name)
    for protocol in (0, 2, 5):
        with open(path, 'wb') as f:
            pickle.dump(dict(format='mmdet3d_equity.likelihoods',
                             payload=_RunsCode(marker)), f,
                        protocol=protocol)
        with pytest.raises(LikelihoodFileError) as e:
            load_likelihood_file(path)
        assert not osp.exists(marker)
        assert str(e.value) == (
            f'likelihood file {path}: is a pickle, not an .npz likelihood '
            'file (pickles, written by unreleased development versions, can '
            'run code when loaded and are never read); recompute it with '
            '`python tools/compute_likelihoods.py CONFIG --out NEW.npz`')


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


def test_a_directory_or_a_link_is_named_for_what_it_is(tmp_path):
    """Not 'not found; create it' (whose fix then fails with 'already
    exists'): the directory, the link loop and the dangling link are said."""
    work = tmp_path / 'work'
    work.mkdir()
    with pytest.raises(LikelihoodFileError) as e:
        load_likelihood_file(str(work))
    assert str(e.value) == (
        f'likelihood file {work}: is a directory, not a likelihood file: '
        'point likelihood_file at the .npz file (tools/compute_likelihoods'
        '.py writes equity_likelihoods.npz into --work-dir)')
    inside = save_likelihood_file(_record(),
                                  str(work / 'equity_likelihoods.npz'))
    with pytest.raises(LikelihoodFileError,
                       match=f'the file inside it is {inside}$'):
        load_likelihood_file(str(work))
    loop = tmp_path / 'loop.npz'
    os.symlink(str(tmp_path / 'loop2.npz'), str(loop))
    os.symlink(str(loop), str(tmp_path / 'loop2.npz'))
    with pytest.raises(LikelihoodFileError) as e:
        load_likelihood_file(str(loop))
    assert str(e.value) == (
        f'likelihood file {loop}: is a symbolic link loop (too many levels '
        'of symbolic links); point likelihood_file at the .npz file itself, '
        'or fix the link')
    dangling = tmp_path / 'dangling.npz'
    os.symlink(str(tmp_path / 'gone.npz'), str(dangling))
    with pytest.raises(LikelihoodFileError, match=r'is a symbolic link to '
                       r'.*gone\.npz, which does not exist'):
        load_likelihood_file(str(dangling))
    # a link to a good file is read
    good = tmp_path / 'good.npz'
    os.symlink(inside, str(good))
    assert load_likelihood_file(str(good))['sample_ids'] == ['0', '1', '2']
    with pytest.raises(LikelihoodFileError, match='must be the path'):
        load_likelihood_file('')


@pytest.mark.parametrize('key', ['cluster_id', 'cluster_size'])
def test_nan_in_an_integer_column_names_column_and_file(tmp_path, key):
    cols = dict(cluster_id=[0, 1, 2], cluster_size=[4, 2, 1])
    cols[key] = [cols[key][0], float('nan'), cols[key][2]]
    with pytest.raises(LikelihoodFileError) as e:
        build_record(['0', '1', '2'], [1.0, 0.5, 0.1], **cols, **SETTINGS)
    assert str(e.value).startswith(
        f'likelihood file <new record>: column {key} holds 1 value(s) that '
        'are not whole numbers (first: nan)')
    # a record dict edited by hand, validated on save: names the file
    rec = _record()
    rec[key] = np.array(cols[key])
    path = str(tmp_path / 'lik.npz')
    with pytest.raises(LikelihoodFileError, match=f'likelihood file {path}: '
                       f'column {key} holds 1 value'):
        save_likelihood_file(rec, path)
    assert not osp.exists(path)
    with pytest.raises(LikelihoodFileError, match=f'column {key} holds 1 '
                       r'value.*\(first: 1\.5\)'):
        build_record(['0', '1', '2'], [1.0, 0.5, 0.1],
                     **dict(cols, **{key: [1, 1.5, 1]}), **SETTINGS)


# ------------------------------------------------ property-based: the reader
def _valid_members():
    rec = _record(extra=dict(raw_labels=np.array([0, 1, -1])))
    from mmdet3d_equity.utils.likelihood_file import encode_record
    return encode_record(rec)


def _load_or_documented_error(path):
    """A record that passes validate_record, or LikelihoodFileError."""
    from mmdet3d_equity.utils import validate_record
    try:
        rec = load_likelihood_file(path)
    except LikelihoodFileError as e:
        assert str(e).startswith('likelihood file ')
        return None
    validate_record(rec, path)
    return rec


SLOW_OK = settings(max_examples=80, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])


@SLOW_OK
@given(data=st.binary(max_size=600))
def test_any_bytes_give_a_record_or_the_documented_error(tmp_path, data):
    path = str(tmp_path / 'any.npz')
    with open(path, 'wb') as f:
        f.write(data)
    assert _load_or_documented_error(path) is None


@SLOW_OK
@given(data=st.data())
def test_damaged_archives_give_a_record_or_the_documented_error(tmp_path,
                                                                data):
    """Bytes of a real file, some flipped or cut off (zip and npy headers
    included)."""
    import io
    buf = io.BytesIO()
    np.savez(buf, **_valid_members())
    raw = bytearray(buf.getvalue())
    cut = data.draw(st.integers(4, len(raw)))
    raw = raw[:cut]
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    path = str(tmp_path / 'damaged.npz')
    with open(path, 'wb') as f:
        f.write(bytes(raw))
    _load_or_documented_error(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() |
    st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
KEYS = st.sampled_from(['format', 'format_version', 'id_key', 'fingerprint',
                        'content_fingerprint', 'dataset', 'embedder',
                        'reducer', 'clusterer', 'likelihood_def',
                        'aggregation', 'extra', '__array__', 'sample_ids'])


@SLOW_OK
@given(metadata=JSON, key=KEYS, value=JSON, whole=st.booleans())
def test_any_json_metadata_gives_a_record_or_the_documented_error(
        tmp_path, metadata, key, value, whole):
    """The metadata replaced by any JSON value, or one of its keys set to
    any JSON value (array references included)."""
    members = _valid_members()
    if whole:
        meta = metadata
    else:
        meta = json.loads(str(members['metadata'][()]))
        meta[key] = value
        if key == '__array__':
            meta = {'__array__': value}
    members['metadata'] = np.asarray(json.dumps(meta))
    path = str(tmp_path / 'meta.npz')
    _rewrite(path, members)
    _load_or_documented_error(path)


@SLOW_OK
@given(member=st.sampled_from(['sample_ids', 'likelihood', 'cluster_id',
                               'cluster_size', 'metadata']),
       value=st.one_of(
           st.lists(st.floats(), max_size=4).map(np.array),
           st.lists(st.integers(-2**63, 2**63 - 1), max_size=4).map(
               lambda v: np.array(v, dtype=np.int64)),
           st.lists(st.text(max_size=3), max_size=4).map(
               lambda v: np.array(v, dtype=str)),
           st.text(max_size=10).map(np.asarray),
           st.just(np.zeros((2, 2)))))
def test_any_member_array_gives_a_record_or_the_documented_error(
        tmp_path, member, value):
    members = dict(_valid_members(), **{member: value})
    path = str(tmp_path / 'member.npz')
    _rewrite(path, members)
    _load_or_documented_error(path)


def test_sample_identity_prefers_token():
    assert sample_identity(dict(sample_idx=3, token='abc')) == 'abc'
    assert sample_identity(dict(sample_idx=3)) == '3'
    with pytest.raises(KeyError, match='token'):
        sample_identity(dict(lidar_points={}))
