"""Scoring another split against the training clustering: the saved scorer
reproduces scikit-learn's own predictions (KMeans, GMM) and independent
numpy computations (DBSCAN core-sample rule, kNN density), survives a
save/load without pickle, and the val split of the tiny KITTI dataset is
scored (in the fitting run and by tools/score_split.py, identically) with
its rare fog frames low."""
import json
import os.path as osp

import numpy as np
import pytest

from mmdet3d_equity.scoring.clustering import (
    FittedScorer,
    ScoringError,
    cluster_embeddings,
    load_scorer,
    reduce_embeddings,
    save_scorer,
    score_embeddings,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


EXT = '.npz'
KITTI_CFG = osp.join(REPO, 'configs/tiny/pointpillars_tiny-kitti-3class.py')
R18 = dict(type='mmdet.ResNet', depth=18, out_indices=(3, ))
IMG = dict(backbone=R18, input_size=(128, 64), batch_size=16)


def _blobs(seed=0, n=120, d=12):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (4, d))
    sizes = [60, 30, 20, 10][:4]
    x = np.concatenate([c + rng.normal(0, 1, (s, d))
                        for c, s in zip(centres, sizes)])[:n]
    val = np.concatenate([centres[rng.integers(0, 4, 30)] +
                          rng.normal(0, 1.2, (30, d)),
                          rng.normal(0, 6, (10, d)) + 30])  # far outliers
    return x.astype(np.float32), val.astype(np.float32)


def _fit(x, reducer, clusterer, likelihood='largest', k=5):
    z, _, pca = reduce_embeddings(x, reducer, seed=0, return_estimator=True)
    raw, rec, est = cluster_embeddings(z, clusterer, seed=0,
                                       return_estimator=True)
    return pca, est, FittedScorer.from_fit(pca, rec['type'], est, z, raw,
                                           likelihood, k), z, raw


def _train_sizes(raw):
    return {int(label): int((raw == label).sum()) for label in set(raw)
            if label >= 0}


@pytest.mark.parametrize('clusterer', [
    dict(type='kmeans', n_clusters=4, n_init=2),
    dict(type='gmm', n_components=4, covariance_type='full'),
    dict(type='gmm', n_components=5, covariance_type='diag'),
    dict(type='gmm', n_components=3, covariance_type='tied'),
    dict(type='gmm', n_components=4, covariance_type='spherical'),
])
def test_kmeans_and_gmm_follow_sklearn_predict(clusterer):
    x, val = _blobs()
    pca, est, scorer, z, raw = _fit(x, dict(type='pca', n_components=5),
                                    clusterer)
    zv = pca.transform(val)
    np.testing.assert_allclose(scorer.transform(val), zv, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_array_equal(scorer.assign(zv), est.predict(zv))
    res = scorer.score(val)
    sizes = _train_sizes(raw)
    biggest = max(sizes.values())
    for label, cid, size, p in zip(est.predict(zv), res['cluster_id'],
                                   res['cluster_size'], res['likelihood']):
        if sizes.get(int(label), 0):
            assert (cid, size) == (label, sizes[int(label)])
            assert p == sizes[int(label)] / biggest
        else:  # an empty component: a singleton with a new id
            assert size == 1 and cid > raw.max() and p == 1 / biggest


def test_gmm_full_against_scipy():
    from scipy.stats import multivariate_normal
    x, val = _blobs(1)
    pca, est, scorer, z, raw = _fit(
        x, dict(type='pca', n_components=4, whiten=True),
        dict(type='gmm', n_components=4, covariance_type='full'))
    zv = scorer.transform(val).astype(np.float64)
    logp = np.stack([np.log(w) + multivariate_normal(m, c).logpdf(zv)
                     for w, m, c in zip(est.weights_, est.means_,
                                        est.covariances_)], 1)
    np.testing.assert_array_equal(scorer.assign(zv), logp.argmax(1))


def test_dbscan_nearest_core_within_eps_else_singleton():
    x, val = _blobs(2)
    pca, est, scorer, z, raw = _fit(x, None,
                                    dict(type='dbscan', eps=4.5,
                                         min_samples=5))
    core = est.core_sample_indices_
    assert len(core) and (raw == -1).any()
    d = np.linalg.norm(val[:, None, :].astype(np.float64) -
                       x[core][None].astype(np.float64), axis=2)
    near = d.argmin(1)
    expected = np.where(d.min(1) <= 4.5, raw[core][near], -1)
    res = scorer.score(val)
    np.testing.assert_array_equal(res['raw_labels'], expected)
    sizes = _train_sizes(raw)
    biggest = max(max(sizes.values()), 1)
    out = expected == -1
    assert out.sum() >= 10  # the far outliers
    assert (res['cluster_size'][out] == 1).all()
    new_ids = res['cluster_id'][out]
    assert len(set(new_ids)) == out.sum() and new_ids.min() > \
        scorer.train_cid.max()
    np.testing.assert_allclose(
        res['likelihood'][~out],
        [sizes[int(e)] / biggest for e in expected[~out]])
    # training noise points are singletons of the training scale too
    assert np.isclose(res['likelihood'][out], 1 / biggest).all()


def test_density_is_distance_to_the_training_samples():
    x, val = _blobs(3)
    pca, est, scorer, z, raw = _fit(x, dict(type='pca', n_components=6),
                                    dict(type='kmeans', n_clusters=3),
                                    likelihood='density', k=5)
    zt = z.astype(np.float64)
    dt = np.linalg.norm(zt[:, None] - zt[None], axis=2)
    r_train = np.sort(dt, 1)[:, 5]  # k-th nearest other sample
    zv = scorer.transform(val).astype(np.float64)
    dv = np.linalg.norm(zv[:, None] - zt[None], axis=2)
    r_val = np.sort(dv, 1)[:, 4]  # k-th nearest training sample
    expected = np.minimum(1.0, r_train[r_train > 0].min() / r_val)
    np.testing.assert_allclose(scorer.score(val)['likelihood'], expected,
                               rtol=1e-5)
    # the training samples themselves, scored by the fit, match training p
    res = score_embeddings(x, reducer=dict(type='pca', n_components=6),
                           clusterer=dict(type='kmeans', n_clusters=3),
                           likelihood_def='density', density_k=5)
    assert res['scorer'].settings['rmin'] == pytest.approx(
        r_train[r_train > 0].min(), rel=1e-5)


def test_hdbscan_and_unsavable_dbscan_are_refused(tmp_path):
    x, val = _blobs(4)
    _, _, scorer, _, _ = _fit(x, None, dict(type='hdbscan'))
    with pytest.raises(ScoringError, match="HDBSCAN cannot place new"):
        scorer.score(val)
    with pytest.raises(ScoringError, match="HDBSCAN cannot place new"):
        save_scorer(str(tmp_path / 's.npz'), {'embedding': scorer}, {})
    _, _, dens, _, _ = _fit(x, None, dict(type='hdbscan'),
                            likelihood='density')
    assert dens.score(val)['likelihood'].shape == (40, )
    _, _, bad, _, _ = _fit(x[:40], None, dict(
        type='dbscan', metric=lambda a, b: float(np.abs(a - b).sum())))
    with pytest.raises(ScoringError, match='cannot be saved'):
        bad.score(val)


def test_save_load_round_trip_without_pickle(tmp_path):
    x, val = _blobs(5)
    scorers = {}
    for name, clu in (('CAM_A', dict(type='kmeans', n_clusters=4)),
                      ('CAM_B', dict(type='gmm', n_components=3))):
        scorers[name] = _fit(x, dict(type='pca', n_components=5), clu)[2]
    path = str(tmp_path / 'lik_scorer.npz')
    save_scorer(path, scorers, dict(note='test', cameras=['CAM_A', 'CAM_B']))
    with np.load(path, allow_pickle=False) as f:  # no object arrays
        assert json.loads(str(f['meta']))['note'] == 'test'
    loaded, meta = load_scorer(path)
    assert list(loaded) == ['CAM_A', 'CAM_B'] and meta['note'] == 'test'
    for name in scorers:
        a, b = scorers[name].score(val), loaded[name].score(val)
        for k in ('likelihood', 'cluster_id', 'cluster_size'):
            np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(FileExistsError):
        save_scorer(path, scorers, {})
    with pytest.raises(ScoringError, match='not found'):
        load_scorer(str(tmp_path / 'none.npz'))
    (tmp_path / 'junk.npz').write_bytes(b'not a zip')
    with pytest.raises(ScoringError, match='cannot be read'):
        load_scorer(str(tmp_path / 'junk.npz'))


# ------------------------------------------------------------ end to end
@pytest.fixture(scope='module')
def scored(tiny_kitti_root, tmp_path_factory):
    """The scored tiny KITTI; EQUITY_TINY_KITTI points at it for the tests
    of this module (and is restored after them)."""
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('EQUITY_TINY_KITTI', tiny_kitti_root)
        out = str(tmp_path_factory.mktemp('split_scoring') / f'lik{EXT}')
        rec = compute_likelihoods(
            KITTI_CFG, out, save_scorer=True, score_splits=('val', ),
            slice_file=osp.join(tiny_kitti_root, 'frame_modes.json'), **IMG)
        yield out, rec, tiny_kitti_root


def test_compute_likelihoods_scores_val_and_reports_slices(scored):
    from mmdet3d_equity.utils import load_likelihood_file
    out, rec, root = scored
    stem = out[:-len(EXT)]
    for f in ('_scorer.npz', '_val' + EXT, '_val.csv', '_slices.json',
              '_figures/likelihood_by_slice.png'):
        assert osp.isfile(stem + f), f
    with open(osp.join(root, 'frame_modes.json')) as f:
        fm = json.load(f)
    val = load_likelihood_file(stem + '_val' + EXT)
    assert val['dataset']['split'] == 'val'
    assert sorted(val['sample_ids']) == sorted(
        i for i, s in fm['split'].items() if s == 'val')
    assert val['extra']['scored_against']['train_fingerprint'] == \
        rec['fingerprint']
    with open(stem + '_slices.json') as f:
        report = json.load(f)
    train = report['splits']['train']
    assert train['fog']['num_samples'] == sum(
        fm['modes'][i] == 'fog' for i in rec['sample_ids'])
    assert train['fog']['median'] == pytest.approx(float(np.median(
        [p for i, p in zip(rec['sample_ids'], rec['likelihood'])
         if fm['modes'][i] == 'fog'])))
    # the scorer found the rare mode, in train and in val
    assert train['fog']['median'] < 0.5 * train['day']['median']
    v = report['splits']['val']
    assert v['fog']['num_samples'] >= 1
    assert v['fog']['median'] < v['day']['median']


def test_score_split_tool_reproduces_the_in_run_val_scores(scored, tmp_path,
                                                           capsys):
    from mmdet3d_equity.utils import load_likelihood_file
    out, rec, root = scored
    stem = out[:-len(EXT)]
    from mmdet3d_equity.cli import score_split
    mine = str(tmp_path / f'val{EXT}')
    assert score_split.main([
        KITTI_CFG, '--scorer', stem + '_scorer.npz', '--out', mine,
        '--cache-dir', osp.join(osp.dirname(out), 'embedding_cache'),
        '--slice-file', osp.join(root, 'frame_modes.json')]) == 0
    a = load_likelihood_file(mine)
    b = load_likelihood_file(stem + '_val' + EXT)
    assert a['sample_ids'] == b['sample_ids']
    np.testing.assert_array_equal(a['likelihood'], b['likelihood'])
    assert osp.isfile(str(tmp_path / 'val_slices.json'))
    assert osp.isfile(str(tmp_path / 'val_slices.png'))
    # a config whose training split differs from the fitted one is refused
    assert score_split.main([
        KITTI_CFG, '--scorer', stem + '_scorer.npz', '--out',
        str(tmp_path / f'x{EXT}'), '--cfg-options',
        'train_dataloader.dataset.dataset.indices=8']) == 2
    assert 'is not the one the scorer was fitted on' in \
        capsys.readouterr().err
    # the val likelihoods make rare / medium / common slices for the metric
    from mmdet3d_equity.evaluation import LikelihoodSlices
    slices, names = LikelihoodSlices(mine).load()
    assert sum(len(slices[n]) for n in names) == len(a['sample_ids'])


@pytest.mark.slow
def test_slice_metric_with_likelihood_bins_of_the_val_split(scored):
    """The documented KITTI config: frame modes + likelihood bins of the
    val split scored against the training fit."""
    import copy

    from _slice_helpers import KITTI_CLASSES, build_val_dataset, gt_predictions
    from mmdet3d.registry import METRICS
    out, rec, root = scored
    val_file = out[:-len(EXT)] + '_val' + EXT
    m = METRICS.build(dict(
        type='SliceMetric', dense=False,
        metric=dict(type='KittiCPUMetric',
                    ann_file=osp.join(root, 'kitti_infos_val.pkl')),
        slices=[dict(type='SliceFile',
                     path=osp.join(root, 'frame_modes.json')),
                dict(type='LikelihoodSlices', path=val_file)]))
    m.dataset_meta = dict(classes=KITTI_CLASSES)
    assert list(m.slices) == ['day', 'dusk', 'fog', 'p_rare', 'p_medium',
                              'p_common']
    results = gt_predictions(build_val_dataset('kitti', root + '/'),
                             'noisy', seed=3)
    m.results = copy.deepcopy(results)
    metrics = m.evaluate(len(results))
    from mmdet3d_equity.utils import load_likelihood_file
    p = np.asarray(load_likelihood_file(val_file)['likelihood'])
    expected = [(p < 0.25).sum(), ((p >= 0.25) & (p < 0.75)).sum(),
                (p >= 0.75).sum()]
    n = [metrics[f'Kitti metric/@{s}:count/num_samples']
         for s in ('p_rare', 'p_medium', 'p_common')]
    assert n == expected and sum(n) == len(results)
    assert n[0] >= 1  # the val fog frames look rare to the training fit
    assert 'Kitti metric/@p_rare/pred_instances_3d/KITTI/Car_3D_AP40_' \
        'moderate_strict' in metrics


def test_compute_likelihoods_cli_options():
    from mmdet3d_equity.cli import compute_likelihoods as tool
    kw = tool.build_kwargs(tool.parse_args([
        KITTI_CFG, '--out', 'x.npz', '--save-scorer', '--score-split', 'val',
        '--slice-file', 'frame_modes.json']))
    assert kw['save_scorer'] is True and kw['score_splits'] == ('val', )
    assert kw['slice_file'] == 'frame_modes.json'
    kw = tool.build_kwargs(tool.parse_args([KITTI_CFG, '--out', 'x.npz']))
    assert (kw['save_scorer'], kw['score_splits'], kw['slice_file']) == \
        (False, (), None)
    with pytest.raises(SystemExit):
        tool.parse_args([KITTI_CFG, '--out', 'x.npz', '--score-split',
                         'train'])


def test_a_missing_val_split_is_found_before_the_training_split_is_embedded(
        tiny_kitti_root, tmp_path, monkeypatch):
    """--score-split val with no val annotations: refused in seconds, before
    any embedding (nothing in the cache, no output)."""
    import shutil
    root = tmp_path / 'kitti'
    shutil.copytree(tiny_kitti_root, root)
    (root / 'kitti_infos_val.pkl').unlink()
    monkeypatch.setenv('EQUITY_TINY_KITTI', str(root))
    from mmdet3d_equity.scoring import pipeline
    embedded = []
    monkeypatch.setattr(pipeline, 'embed_split',
                        lambda *a, **k: embedded.append(a) or 1 / 0)
    out = tmp_path / 'out' / f'lik{EXT}'
    with pytest.raises(ScoringError) as exc:
        pipeline.compute_likelihoods(KITTI_CFG, str(out), save_scorer=True,
                                     score_splits=('val', ), **IMG)
    assert str(exc.value).startswith(
        f'val annotation file not found: {root}/kitti_infos_val.pkl')
    assert embedded == []
    assert not out.exists()
