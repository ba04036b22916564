"""Reduction, clustering and likelihood definitions (no images involved)."""
import numpy as np
import pytest

from mmdet3d_equity.scoring.cameras import combine_camera_scores
from mmdet3d_equity.scoring.clustering import (
    ScoringError,
    auto_n_clusters,
    cluster_embeddings,
    cluster_sizes,
    knn_density_likelihood,
    noise_to_singletons,
    reduce_embeddings,
    score_embeddings,
    size_likelihood,
)


def blobs(sizes, dim=16, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3.0, (len(sizes), dim))
    lab = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[lab] + rng.normal(0, spread, (len(lab), dim))
    return x.astype(np.float32), lab


def test_likelihood_definitions_match_hand_computation():
    # hand-made clustering: cluster 0 has 5, cluster 1 has 3, cluster 7 has
    # 1 member, plus two noise points
    labels = np.array([0, 0, 1, 0, 7, -1, 1, 0, 1, -1, 0])
    cid = noise_to_singletons(labels)
    # noise points became singletons with unique, unused ids
    assert cid[5] != cid[9]
    assert cid[5] not in labels and cid[9] not in labels
    np.testing.assert_array_equal(cid[labels >= 0], labels[labels >= 0])
    size = cluster_sizes(cid)
    expected_size = np.array([5, 5, 3, 5, 1, 1, 3, 5, 3, 1, 5])
    np.testing.assert_array_equal(size, expected_size)
    np.testing.assert_allclose(size_likelihood(cid, 'largest'),
                               expected_size / 5.0)
    np.testing.assert_allclose(size_likelihood(cid, 'fraction'),
                               expected_size / 11.0)
    with pytest.raises(ScoringError, match='unknown definition'):
        size_likelihood(cid, 'median')


def test_noise_is_never_pooled():
    labels = np.array([-1] * 6 + [0] * 4)
    cid = noise_to_singletons(labels)
    assert len(np.unique(cid[:6])) == 6
    lik = size_likelihood(cid, 'largest')
    # isolated samples get the SMALLEST likelihood, not the largest
    np.testing.assert_allclose(lik[:6], 0.25)
    np.testing.assert_allclose(lik[6:], 1.0)
    # all noise: every sample its own cluster
    np.testing.assert_array_equal(noise_to_singletons([-1, -1, -1]),
                                  [0, 1, 2])


def test_knn_density_independent_computation():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(30, 3)).astype(np.float32)
    k = 4
    d = np.linalg.norm(z[:, None] - z[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    r = np.sort(d, axis=1)[:, k - 1]
    np.testing.assert_allclose(knn_density_likelihood(z, k=k), r.min() / r,
                               rtol=1e-5)
    lik = knn_density_likelihood(z, k=k)
    assert lik.max() == pytest.approx(1.0) and (lik > 0).all()


@pytest.mark.parametrize('clusterer', [
    dict(type='kmeans', n_clusters=3),
    dict(type='gmm', n_components=3, covariance_type='diag'),
    dict(type='dbscan', eps=1.0, min_samples=3),
    dict(type='hdbscan', min_cluster_size=3),
])
def test_clusterers_find_the_rare_blob(clusterer):
    x, lab = blobs([40, 25, 4], dim=8)
    res = score_embeddings(x, reducer=dict(type='pca', n_components=4),
                           clusterer=clusterer, seed=0)
    lik = res['likelihood']
    assert lik[lab == 2].max() < 0.5 * np.median(lik[lab == 0])
    assert res['clusterer']['type'] == clusterer['type']
    for k, v in clusterer.items():
        if k != 'type':
            assert res['clusterer'][k] == v
    assert res['reducer']['n_components'] == 4


def test_dbscan_noise_singletons_in_pipeline():
    x, lab = blobs([30, 30], dim=4, spread=0.05)
    outliers = np.random.default_rng(1).normal(0, 50, (3, 4)).astype(
        np.float32)
    x = np.concatenate([x, outliers])
    res = score_embeddings(x, reducer=None,
                           clusterer=dict(type='dbscan', eps=0.5,
                                          min_samples=5))
    assert (res['raw_labels'][-3:] == -1).all()
    assert len(set(res['cluster_id'][-3:].tolist())) == 3
    assert (res['cluster_size'][-3:] == 1).all()
    np.testing.assert_allclose(res['likelihood'][-3:], 1 / 30)
    assert res['clusterer']['num_noise'] == 3


def test_fixed_seed_is_reproducible():
    x, _ = blobs([50, 30, 10, 5], dim=32, spread=1.0)
    a = score_embeddings(x, seed=5)
    b = score_embeddings(x, seed=5)
    np.testing.assert_array_equal(a['likelihood'], b['likelihood'])
    np.testing.assert_array_equal(a['cluster_id'], b['cluster_id'])
    assert a['clusterer']['random_state'] == 5
    assert a['reducer']['random_state'] == 5


def test_pca_whitening_and_component_clipping_recorded(caplog):
    x, _ = blobs([10, 10], dim=50)
    z, rec = reduce_embeddings(x, dict(type='pca', n_components=64,
                                       whiten=True))
    assert z.shape == (20, 20)
    assert rec['n_components_requested'] == 64 and rec['n_components'] == 20
    assert rec['whiten'] is True
    z, rec = reduce_embeddings(x, None)
    assert rec == dict(type='none') and z.shape == (20, 50)


def test_auto_clusters_rule():
    assert auto_n_clusters(64) == 4
    assert auto_n_clusters(28000) == 84
    assert auto_n_clusters(3) == 2
    _, rec = cluster_embeddings(blobs([20, 20])[0],
                                dict(type='kmeans', n_clusters='auto'))
    assert rec['n_clusters'] == 3 and 'n_clusters_rule' in rec


def test_bad_input_errors():
    x, _ = blobs([10, 10])
    with pytest.raises(ScoringError,
                       match="unknown clusterer type 'spectral'"):
        score_embeddings(x, clusterer=dict(type='spectral'))
    with pytest.raises(ScoringError,
                       match=r"unknown parameter\(s\) \['epsilon'\]"):
        score_embeddings(x, clusterer=dict(type='dbscan', epsilon=1.0))
    with pytest.raises(ScoringError, match='invalid parameter'):
        score_embeddings(x, clusterer=dict(type='dbscan', eps=-1.0))
    with pytest.raises(ScoringError, match="unknown reducer type 'umap'"):
        score_embeddings(x, reducer=dict(type='umap'))
    with pytest.raises(ScoringError, match='unknown likelihood definition'):
        score_embeddings(x, likelihood_def='rank')
    with pytest.raises(ScoringError, match='exceeds the number of samples'):
        score_embeddings(x, clusterer=dict(type='kmeans', n_clusters=50))
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ScoringError, match=r"NaN/inf \(samples \['s3'\]"):
        score_embeddings(bad, ids=[f's{i}' for i in range(20)])
    with pytest.raises(ScoringError, match='training split is empty'):
        score_embeddings(np.zeros((0, 8), np.float32))


def test_combine_cameras():
    a = dict(likelihood=np.array([1.0, 0.2, 0.5]),
             cluster_id=np.array([0, 1, 2]), cluster_size=np.array([5, 1, 2]))
    b = dict(likelihood=np.array([0.4, 0.6, 1.0]),
             cluster_id=np.array([3, 0, 0]), cluster_size=np.array([2, 3, 5]))
    m = combine_camera_scores(dict(A=a, B=b), 'min')
    np.testing.assert_allclose(m['likelihood'], [0.4, 0.2, 0.5])
    np.testing.assert_array_equal(m['cluster_size'], [2, 1, 2])
    assert m['rarest_camera'] == ['B', 'A', 'A']
    assert m['cluster_id'][0] == 4 + 3  # camera 1 * stride 4 + id 3
    mean = combine_camera_scores(dict(A=a, B=b), 'mean')
    np.testing.assert_allclose(mean['likelihood'], [0.7, 0.4, 0.75])
    with pytest.raises(ScoringError):
        combine_camera_scores(dict(A=a), 'max')


def test_validate_before_work():
    from mmdet3d_equity.scoring.clustering import validate_scoring_params
    validate_scoring_params(dict(type='pca', n_components=8), None, 'largest')
    validate_scoring_params(None, dict(type='gmm', n_components='auto'),
                            'density')
    with pytest.raises(ScoringError, match='invalid parameter'):
        validate_scoring_params(None, dict(type='hdbscan',
                                           min_cluster_size=0), 'largest')
    with pytest.raises(ScoringError, match='unknown likelihood'):
        validate_scoring_params(None, None, 'max')
