"""EquityHook's start-of-training checks against the train dataset/sampler,
'dataset' normalisation, the resampling sampler through mmengine's
dataloader builder, GeneralizedFocalLoss as a plain per-sample loss."""
import numpy as np
import pytest
import torch

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity import equity_weight
from mmdet3d_equity.engine.hooks.equity_hook import EquityHook
from test_equity_dataset import (FRAME_IDS, _build, likelihoods,  # noqa: F401
                                 toy_cfg, write_file)


@pytest.fixture
def lik_file(tmp_path):
    return write_file(tmp_path / 'lik.pkl', FRAME_IDS)


def test_hook_checks_the_train_dataset(lik_file):
    plain = _build(toy_cfg())
    with pytest.raises(ValueError, match='not wrapped in EquityDataset'):
        EquityHook()._check_dataset(plain, None)
    eq = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     eta=0.5, dataset=toy_cfg()))
    with pytest.raises(ValueError, match='differs from EquityDataset'):
        EquityHook()._check_dataset(eq, None)
    EquityHook(loss=dict(type='GeneralizedFocalLoss', eta=0.5))\
        ._check_dataset(eq, None)


def test_hook_refuses_double_weighting_with_the_sampler(lik_file):
    from mmdet3d.registry import DATA_SAMPLERS
    eq = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     dataset=toy_cfg()))
    sampler = DATA_SAMPLERS.build(dict(type='EquityWeightedSampler'),
                                  default_args=dict(dataset=eq, seed=0))
    with pytest.raises(ValueError, match='apply W twice'):
        EquityHook()._check_dataset(eq, sampler)


def test_dataset_normalisation_uses_the_iterated_indices(lik_file):
    # CBGS duplicates samples: the mean is over its indices, not the files'
    ds = _build(dict(type='CBGSDataset', dataset=dict(
        type='EquityDataset', likelihood_file=lik_file, dataset=toy_cfg())))
    hook = EquityHook(loss=dict(type='GeneralizedFocalLoss',
                                normalisation='dataset'))
    hook._check_dataset(ds, None)
    lik = likelihoods(FRAME_IDS)
    w = np.array([
        equity_weight(lik[str(FRAME_IDS[ds.get_data_info(i)['sample_idx']])])
        for i in range(len(ds))
    ])
    assert hook.gfl._dataset_mean == pytest.approx(w.mean(), rel=1e-12)
    got = hook.gfl.weights(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(
        got, torch.tensor([1.0, 0.5], dtype=torch.float64) / w.mean())


def test_sampler_through_mmengine_dataloader_builder(lik_file):
    from mmengine.runner import Runner
    eq_cfg = dict(type='EquityDataset', likelihood_file=lik_file,
                  dataset=toy_cfg())
    _build(eq_cfg)  # registers scope
    loader = Runner.build_dataloader(
        dict(batch_size=3, num_workers=0,
             sampler=dict(type='EquityWeightedSampler'),
             dataset=eq_cfg, collate_fn=dict(type='pseudo_collate')),
        seed=0)
    assert type(loader.sampler).__name__ == 'EquityWeightedSampler'
    batch = next(iter(loader))
    assert len(batch['data_samples']) == 3
    for ds in batch['data_samples']:
        assert 'equity_likelihood' in ds.metainfo


def test_generalized_focal_loss_module():
    from mmdet3d.registry import MODELS
    gfl = MODELS.build(dict(type='GeneralizedFocalLoss', eta=0.3, gamma=2.0))
    loss = torch.tensor([2.0, 3.0, 5.0], requires_grad=True)
    p = torch.tensor([0.0, 0.3, 1.0])
    out = gfl(loss, p)
    w = [(0.3 + (1 - x)**2) / 1.3 for x in (0.0, 0.3, 1.0)]
    assert out.item() == pytest.approx(sum(a * b for a, b in
                                           zip(w, [2.0, 3.0, 5.0])))
    out.backward()
    np.testing.assert_allclose(loss.grad.numpy(), w, rtol=1e-6)
    with pytest.raises(ValueError, match='shape'):
        gfl(loss[:2], p)
    assert 'eta=0.3' in repr(gfl)
    # distinct from mmdet's QualityFocalLoss ("GFL")
    assert type(gfl).__module__.startswith('mmdet3d_equity')
