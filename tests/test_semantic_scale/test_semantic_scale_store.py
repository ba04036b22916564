"""The store's fast class-scale update (running float64 moments + one
batched Cholesky) against the float64 reference :func:`class_scales`
(re-centred features, per-class log-determinant, Gram form when m < d).

Tolerance (also in docs/semantic_scale.md): S' within 1e-9 relative (1e-9
bits absolute near 0), weights and scales within 1e-9 relative, centres
within 1e-12 relative, on random and ill-conditioned inputs.
"""
import numpy as np
import pytest
import torch

from mmdet3d_equity.semantic_scale.measures import (
    class_scales,
    semantic_scale,
    semantic_scale_from_scatter,
    semantic_scales_from_scatter,
)
from mmdet3d_equity.semantic_scale.store import ClassFeatureStore

RTOL = 1e-9


def assert_matches_reference(store, alpha=2.0, min_count=2):
    res = store.compute(alpha=alpha, min_count=min_count)
    feats = [store.features(c) for c in range(store.num_classes)]
    ref = class_scales(feats, alpha=alpha, min_count=min_count)
    np.testing.assert_array_equal(res['count'], ref['count'])
    np.testing.assert_allclose(res['scale_prime'], ref['scale_prime'],
                               rtol=RTOL, atol=1e-9)
    for k in ('scale', 'weight'):
        np.testing.assert_allclose(res[k], ref[k], rtol=RTOL, err_msg=k)
    np.testing.assert_array_equal(res['measured'], ref['measured'])
    for c, f in enumerate(feats):
        if f.shape[0]:
            np.testing.assert_allclose(
                res['centres'][c], f.double().mean(0).numpy(), rtol=1e-12,
                atol=1e-12 * float(f.abs().max()))
    return res, ref


def test_random_pushes_over_many_wraps():
    g = torch.Generator().manual_seed(0)
    C, d, cap = 4, 16, 48
    st = ClassFeatureStore(C, cap)
    offset = torch.tensor([0.0, 1e3, -50.0, 7.0])[:, None]
    scale = torch.tensor([1.0, 0.1, 30.0, 1e-3])[:, None]
    for it in range(60):
        n = int(torch.randint(0, 40, (1, ), generator=g))
        labels = torch.randint(0, C, (n, ), generator=g)
        f = torch.randn(n, d, generator=g) * scale[labels] + offset[labels]
        st.push(f, labels)
        if it % 20 == 19:
            assert_matches_reference(st)
    assert (st.counts() == cap).all()
    assert (st.total_pushed > 3 * cap).all()  # wrapped several times


def test_ill_conditioned_classes():
    g = torch.Generator().manual_seed(1)
    d = 32
    st = ClassFeatureStore(7, capacity=64)
    one = torch.randn(1, d, generator=g) * 5           # m = 1: S' = 0
    few = torch.randn(3, d, generator=g)               # m = 3 < d: Gram
    dup = torch.randn(1, d, generator=g).repeat(20, 1) * 3 + 100  # all same
    basis = torch.randn(2, d, generator=g)             # rank 2, far away
    low = torch.randn(40, 2, generator=g) @ basis + 1e4
    mixed = torch.cat([dup[:10], torch.randn(5, d, generator=g) + 100])
    cols = torch.logspace(-3, 3, d)                    # condition 1e12
    wide = torch.randn(64, d, generator=g) * cols
    for c, f in enumerate([one, few, dup, low, mixed, wide]):
        st.push(f, torch.full((f.shape[0], ), c))
    res, ref = assert_matches_reference(st)            # class 6 empty
    assert res['scale_prime'][0] == 0.0 and res['scale_prime'][6] == 0.0
    assert abs(res['scale_prime'][2]) < 1e-9           # duplicates
    assert list(res['measured']) == [False, True, True, True, True, True,
                                     False]
    # d > m and rank-deficient classes really exercise the Gram form in
    # the reference
    assert res['scale_prime'][1] > 0 and res['scale_prime'][3] > 0


def test_drifting_features_keep_the_moments_exact():
    """Features whose mean moves by 1000 standard deviations while the ring
    is refilled 40 times: no drift of the running float64 moments."""
    g = torch.Generator().manual_seed(2)
    d, cap = 8, 32
    st = ClassFeatureStore(2, cap)
    for it in range(180):
        centre = 1000.0 * it / 180
        f = torch.randn(14, d, generator=g) + centre
        st.push(f, torch.tensor([0] * 7 + [1] * 7))
    assert int(st.total_pushed[0]) == 180 * 7
    assert_matches_reference(st)


def test_state_dict_continues_bit_for_bit_and_rebuilds_when_needed():
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(20, 6, generator=g) * 4 + 9,
                torch.randint(0, 3, (20, ), generator=g)) for _ in range(9)]
    st = ClassFeatureStore(3, 16)
    for f, lab in batches[:5]:
        st.push(f, lab)
    state = st.state_dict()
    assert state['moments']['s2'].dtype == torch.float64
    resumed = ClassFeatureStore(3, 16)
    resumed.load_state_dict(state)
    for f, lab in batches[5:]:  # both go on with the same data
        st.push(f, lab)
        resumed.push(f, lab)
    a, b = st.compute(), resumed.compute()
    for k in ('scale_prime', 'weight', 'centres'):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # bitwise
    assert_matches_reference(resumed)
    # a smaller capacity drops features: the moments are rebuilt from the
    # kept ones; a checkpoint without moments (older version) likewise
    small = ClassFeatureStore(3, 8)
    small.load_state_dict(state)
    assert_matches_reference(small)
    old = dict(state)
    old.pop('moments')
    legacy = ClassFeatureStore(3, 16)
    legacy.load_state_dict(old)
    res = assert_matches_reference(legacy)[0]
    exact = ClassFeatureStore(3, 16)
    exact.load_state_dict(state)
    np.testing.assert_allclose(res['weight'], exact.compute()['weight'],
                               rtol=1e-12)


def test_batched_scatter_logdet_equals_per_class():
    g = torch.Generator().manual_seed(4)
    feats = [torch.randn(m, 12, generator=g, dtype=torch.float64)
             for m in (0, 1, 5, 12, 300)]
    scat = torch.stack([(f - f.mean(0)).T @ (f - f.mean(0)) if len(f)
                        else torch.zeros(12, 12, dtype=torch.float64)
                        for f in feats])
    counts = [len(f) for f in feats]
    batched = semantic_scales_from_scatter(scat, counts)
    for c, f in enumerate(feats):
        assert batched[c] == pytest.approx(semantic_scale(f), rel=1e-12,
                                           abs=1e-12)
        assert batched[c] == pytest.approx(
            semantic_scale_from_scatter(scat[c], counts[c]), rel=1e-12,
            abs=1e-12)
    bad = scat.clone()
    bad[3, 0, 0] = float('nan')
    with pytest.raises(ValueError, match='NaN or inf'):
        semantic_scales_from_scatter(bad, counts)
    with pytest.raises(ValueError, match=r'\(C, d, d\)'):
        semantic_scales_from_scatter(scat[0], counts[:1])


def test_one_push_beyond_capacity_keeps_the_newest_rows():
    g = torch.Generator().manual_seed(5)
    st = ClassFeatureStore(3, capacity=8)
    st.push(torch.randn(5, 4, generator=g) + 3, torch.full((5, ), 0))
    f = torch.randn(23, 4, generator=g) * 2
    lab = torch.tensor([0] * 20 + [1] * 3)
    perm = torch.randperm(23, generator=g)  # classes interleaved
    st.push(f[perm], lab[perm])
    kept = f[perm][lab[perm] == 0][-8:]  # the newest 8 of class 0
    assert sorted(st.features(0)[:, 0].tolist()) == sorted(
        kept[:, 0].tolist())
    assert st.counts().tolist() == [8, 3, 0]
    assert st.total_pushed.tolist() == [25, 3, 0]
    assert_matches_reference(st)
