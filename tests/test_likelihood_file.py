import os.path as osp
import pickle

import numpy as np
import pytest

from mmdet3d_equity.scoring import (LikelihoodFileError, build_record,
                                    dataset_fingerprint,
                                    load_likelihood_file,
                                    save_likelihood_file, sample_identity)


def _record(ids=('0', '1', '2'), lik=(1.0, 0.5, 0.1)):
    return build_record(
        list(ids), list(lik), [0, 1, 2], [4, 2, 1], id_key='sample_idx',
        dataset=dict(type='KittiDataset'), embedder=dict(type='x'),
        reducer=None, clusterer=dict(type='KMeans', n_clusters=3),
        likelihood_def='largest')


def test_roundtrip_and_no_overwrite(tmp_path):
    path = str(tmp_path / 'lik.pkl')
    save_likelihood_file(_record(), path)
    rec = load_likelihood_file(path)
    assert rec['sample_ids'] == ['0', '1', '2']
    np.testing.assert_array_equal(rec['likelihood'], [1.0, 0.5, 0.1])
    with pytest.raises(FileExistsError, match='overwrite'):
        save_likelihood_file(_record(lik=(1, 1, 1)), path)
    # the existing file is untouched
    np.testing.assert_array_equal(
        load_likelihood_file(path)['likelihood'], [1.0, 0.5, 0.1])
    save_likelihood_file(_record(lik=(1, 1, 1)), path, overwrite=True)
    np.testing.assert_array_equal(
        load_likelihood_file(path)['likelihood'], [1, 1, 1])


def test_fingerprint_is_order_independent_and_sensitive():
    assert dataset_fingerprint(['a', 'b']) == dataset_fingerprint(['b', 'a'])
    assert dataset_fingerprint(['a', 'b']) != dataset_fingerprint(['a', 'c'])
    assert dataset_fingerprint([7, 8]) == dataset_fingerprint(['8', '7'])


def test_sample_identity_prefers_token():
    assert sample_identity(dict(sample_idx=3, token='abc')) == 'abc'
    assert sample_identity(dict(sample_idx=3)) == '3'
    with pytest.raises(KeyError, match='token'):
        sample_identity(dict(lidar_points={}))


def test_bad_files_name_file_and_problem(tmp_path):
    missing = str(tmp_path / 'nope.pkl')
    with pytest.raises(LikelihoodFileError, match='nope.pkl.*not found'):
        load_likelihood_file(missing)
    with pytest.raises(LikelihoodFileError, match='NaN'):
        _record(lik=(1.0, float('nan'), 0.1))
    rec = _record()
    rec['likelihood'] = np.array([1.0, np.nan, 0.2])
    path = str(tmp_path / 'nan.pkl')
    with open(path, 'wb') as f:
        pickle.dump(rec, f)
    with pytest.raises(LikelihoodFileError, match=r'nan\.pkl.*NaN'):
        load_likelihood_file(path)
    rec = _record()
    rec['sample_ids'] = ['0', '1', '9']  # edited ids: fingerprint mismatch
    with open(path, 'wb') as f:
        pickle.dump(rec, f)
    with pytest.raises(LikelihoodFileError, match='fingerprint'):
        load_likelihood_file(path)
    with open(path, 'wb') as f:
        pickle.dump({'a': 1}, f)
    with pytest.raises(LikelihoodFileError, match='not an mmdet3d-equity'):
        load_likelihood_file(path)
    assert osp.isfile(path)
