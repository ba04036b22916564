"""Semantic-scale measures against an independent numpy computation."""
import math

import numpy as np
import pytest
import torch

from mmdet3d_equity.semantic_scale.measures import (
    class_scales,
    class_scales_from_stats,
    imbalance_summary,
    inter_class_term,
    marginal_effect_curve,
    semantic_scale,
    semantic_scale_from_scatter,
    ssb_class_weights,
)


def numpy_scale(z):
    """Covariance-eigenvalue form: 1/2 sum log2(1 + d * lambda_k), with
    lambda the eigenvalues of the biased covariance Zc^T Zc / m."""
    m, d = z.shape
    if m <= 1:
        return 0.0
    zc = z - z.mean(0)
    cov = zc.T @ zc / m
    lam = np.linalg.eigvalsh(cov)
    lam = np.clip(lam, 0, None)
    return 0.5 * np.sum(np.log2(1 + d * lam))


@pytest.mark.parametrize('m,d', [(5, 40), (40, 5), (16, 16), (3, 200)])
def test_matches_numpy(m, d):
    rng = np.random.default_rng(m * 100 + d)
    z = rng.normal(size=(m, d)) * rng.uniform(0.1, 3, size=d)
    ours = semantic_scale(z)
    ref = numpy_scale(z)
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-9)
    # torch input, float32, gives the same (computed in float64)
    assert semantic_scale(torch.from_numpy(z)) == pytest.approx(ref, rel=1e-9)
    # scatter form agrees
    zc = z - z.mean(0)
    assert semantic_scale_from_scatter(torch.from_numpy(zc.T @ zc), m) == \
        pytest.approx(ref, rel=1e-9)


def test_gram_form_used_and_equal_for_m_lt_d():
    # the identity det(I_d + a ZZ^T) = det(I_m + a Z^T Z) holds
    rng = np.random.default_rng(0)
    z = rng.normal(size=(7, 300))
    zc = z - z.mean(0)
    a = 300 / 7
    direct = np.linalg.slogdet(np.eye(300) + a * zc.T @ zc)[1]
    assert semantic_scale(z) == pytest.approx(0.5 * direct / math.log(2),
                                              rel=1e-9)


def test_finite_at_d2048():
    rng = np.random.default_rng(1)
    for m in (100, 3000):
        z = rng.normal(size=(m, 2048)).astype(np.float32) * 50
        s = semantic_scale(z)
        assert math.isfinite(s) and s > 0
    # plain det overflows here: check that we really are in that regime
    assert not np.isfinite(np.linalg.det(np.eye(2048) * 10.0))


@pytest.mark.parametrize('m', [0, 1])
def test_zero_for_m_le_1(m):
    assert semantic_scale(np.ones((m, 8))) == 0.0
    assert semantic_scale_from_scatter(torch.zeros(8, 8), m) == 0.0


def test_rejects_bad_input():
    with pytest.raises(ValueError, match='shape'):
        semantic_scale(np.zeros(5))
    with pytest.raises(ValueError, match='NaN'):
        semantic_scale(np.array([[0.0, np.nan], [1, 2]]))
    with pytest.raises(TypeError, match='numpy'):
        semantic_scale([[1.0, 2.0]])


def test_grows_with_m_with_diminishing_increments_and_orders_by_volume():
    rng = np.random.default_rng(2)
    d = 32
    pool = rng.normal(size=(2048, d))
    # beyond m ~ d every doubling of m adds less scale (marginal effect)
    c = marginal_effect_curve(pool, sizes=[64, 128, 256, 512, 1024, 2048],
                              repeats=3, seed=0)
    vals = np.array(c['mean'])
    inc = np.diff(vals)
    assert (inc > 0).all(), vals
    assert (np.diff(inc) < 0).all(), inc
    curve = marginal_effect_curve(pool[:1000], sizes=[10, 100, 1000],
                                  repeats=2)
    assert curve['mean'][0] < curve['mean'][1] < curve['mean'][2]
    assert curve['std'][2] == 0.0
    # classes ordered by covariance volume, at equal m
    small = rng.normal(size=(500, d)) * 0.5
    mid = rng.normal(size=(500, d)) * 1.0
    big = rng.normal(size=(500, d)) * 2.0
    s = [semantic_scale(x) for x in (small, mid, big)]
    assert s[0] < s[1] < s[2]


def test_inter_class_and_final_scale_formula():
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    W = inter_class_term(centres, alpha=2.0)
    w = np.array([(3 + 4) / 2, (3 + 5) / 2, (4 + 5) / 2])
    assert np.allclose(W, np.log2(2 + w / w.max()))
    with pytest.raises(ValueError, match='alpha'):
        inter_class_term(centres, alpha=0.5)
    res = class_scales_from_stats([10, 10, 10], [2.0, 4.0, 1.0], centres,
                                  alpha=2.0)
    S = np.array([0.5, 1.0, 0.25]) * W
    assert np.allclose(res['scale'], S)
    inv = 1 / S
    assert np.allclose(res['weight'], inv / inv.mean())
    assert res['weight'].mean() == pytest.approx(1.0)
    assert np.allclose(ssb_class_weights(S), res['weight'])


def test_too_few_and_empty_classes_are_finite():
    rng = np.random.default_rng(3)
    per = [rng.normal(size=(50, 4)), rng.normal(size=(1, 4)) + 5, None,
           np.zeros((0, 4)), rng.normal(size=(30, 4)) * 0.1 + 2]
    res = class_scales(per, alpha=2.0, min_count=2)
    for k in ('scale', 'weight'):
        assert np.isfinite(res[k]).all()
    assert list(res['measured']) == [True, False, False, False, True]
    measured_min = res['scale'][[0, 4]].min()
    assert np.allclose(res['scale'][[1, 2, 3]], measured_min)
    assert np.isnan(res['inter_class'][1])
    assert res['weight'].mean() == pytest.approx(1.0)
    # nothing measured -> all weights 1
    res = class_scales([None, np.zeros((1, 4))])
    assert np.allclose(res['weight'], 1.0)
    # no diversity at all -> finite, equal S' based weights
    res = class_scales([np.ones((5, 3)), np.ones((5, 3)) * 2])
    assert np.isfinite(res['weight']).all()
    # alpha = 1 with a class at W' small: floored, finite
    res = class_scales([rng.normal(size=(20, 3)), rng.normal(size=(20, 3))],
                       alpha=1.0)
    assert np.isfinite(res['weight']).all()


def test_bad_parameters():
    with pytest.raises(ValueError, match='min_count'):
        class_scales_from_stats([3], [1.0], np.zeros((1, 2)), min_count=1)
    with pytest.raises(ValueError, match='scale_floor'):
        class_scales_from_stats([3], [1.0], np.zeros((1, 2)), scale_floor=0)
    with pytest.raises(ValueError, match='alpha'):
        class_scales([np.ones((3, 2))], alpha=float('nan'))
    with pytest.raises(ValueError, match='> 0'):
        ssb_class_weights([1.0, 0.0])


def test_imbalance_summary():
    summ = imbalance_summary([100, 10, 1], [5.0, 4.0, 0.0], [1.0, 0.8, 0.8],
                             ['a', 'b', 'c'], measured=[True, True, False])
    assert summ['count_ratio'] == pytest.approx(10.0)
    assert summ['scale_prime_ratio'] == pytest.approx(1.25)
    assert summ['classes_by_count'] == ['a', 'b', 'c']
    assert summ['num_measured'] == 2
    assert summ['count_vs_scale_pearson'] == pytest.approx(1.0)
