"""EquityHook's start-of-training checks against the train dataset/sampler,
'dataset' normalisation, the resampling sampler (its own GFL config) through
mmengine's dataloader builder, GeneralizedFocalLoss as a plain per-sample
loss, and parameter errors that name the parameter and where it belongs."""
import numpy as np
import pytest
import torch
from _toy_equity import (  # noqa: F401
    FRAME_IDS,
    SAMPLER_LOSS,
    _build,
    likelihoods,
    toy_cfg,
    write_file,
)

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity import equity_weight
from mmdet3d_equity.engine.hooks.equity_hook import EquityHook
from mmdet3d_equity.utils.errors import ConfigError


@pytest.fixture
def lik_file(tmp_path):
    return write_file(tmp_path / 'equity_likelihoods.npz', FRAME_IDS)


def test_hook_checks_the_train_dataset(lik_file):
    plain = _build(toy_cfg())
    with pytest.raises(ValueError, match='not wrapped in EquityDataset'):
        EquityHook()._check_dataset(plain, None)
    eq = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     dataset=toy_cfg()))
    hook = EquityHook(loss=dict(type='GeneralizedFocalLoss', eta=0.5))
    hook._check_dataset(eq, None)
    assert eq._claims['loss'] == hook.owner
    hook.remove()  # releases its claim
    assert 'loss' not in eq._claims


def test_hook_refuses_double_weighting_with_the_sampler(lik_file):
    from mmdet3d.registry import DATA_SAMPLERS
    eq = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     dataset=toy_cfg()))
    sampler = DATA_SAMPLERS.build(
        dict(type='EquityWeightedSampler', loss=SAMPLER_LOSS),
        default_args=dict(dataset=eq, seed=0))
    with pytest.raises(ValueError, match='apply W twice'):
        EquityHook()._check_dataset(eq, sampler)
    # also when the hook is not told about the sampler: the dataset's claim
    with pytest.raises(ValueError, match='would both apply W'):
        EquityHook()._check_dataset(eq, None)


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
    hook.remove()


def test_sampler_through_mmengine_dataloader_builder(lik_file):
    from mmengine.runner import Runner
    eq_cfg = dict(type='EquityDataset', likelihood_file=lik_file,
                  dataset=toy_cfg())
    _build(eq_cfg)  # registers scope
    loader = Runner.build_dataloader(
        dict(batch_size=3, num_workers=0,
             sampler=dict(type='EquityWeightedSampler', loss=SAMPLER_LOSS),
             dataset=eq_cfg, collate_fn=dict(type='pseudo_collate')),
        seed=0)
    assert type(loader.sampler).__name__ == 'EquityWeightedSampler'
    assert loader.sampler.gfl.eta == 0.3 and loader.sampler.gfl.gamma == 2.0
    # a sampler without EquitySamplingHook (which binds it to the
    # checkpoints) is refused at the first sample, naming the fix
    with pytest.raises(ConfigError, match=r"resamples without "
                       r"EquitySamplingHook.*custom_hooks = \[dict\("
                       r"type='EquitySamplingHook'\)\]"):
        next(iter(loader))
    loader.dataset.claim('binding', 'EquitySamplingHook')  # what it does
    batch = next(iter(loader))
    assert len(batch['data_samples']) == 3
    for ds in batch['data_samples']:
        assert 'equity_likelihood' in ds.metainfo


def test_sampler_loss_is_validated(lik_file):
    from mmdet3d.registry import DATA_SAMPLERS
    eq = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                     dataset=toy_cfg()))

    def build(loss):
        return DATA_SAMPLERS.build(dict(type='EquityWeightedSampler',
                                        loss=loss),
                                   default_args=dict(dataset=eq, seed=0))

    with pytest.raises(ValueError, match="normalisation='dataset'"):
        build(dict(type='GeneralizedFocalLoss', eta=0.3))
    with pytest.raises(ValueError, match="terms must be 'all'"):
        build(dict(SAMPLER_LOSS, terms=['cls']))
    with pytest.raises(TypeError, match='must build a GeneralizedFocalLoss'):
        build(dict(type='mmdet.FocalLoss'))
    # default: the paper's eta=1, gamma=5, normalised by the dataset mean
    s = DATA_SAMPLERS.build(dict(type='EquityWeightedSampler'),
                            default_args=dict(dataset=eq, seed=0))
    assert (s.gfl.eta, s.gfl.gamma, s.gfl.normalisation) == (1.0, 5.0,
                                                             'dataset')
    np.testing.assert_allclose(
        s.weights.numpy(), equity_weight(eq.index_likelihoods()), rtol=0)


@pytest.mark.parametrize('where', ['hook', 'sampler', 'function'])
@pytest.mark.parametrize('name', ['eta', 'gamma'])
def test_eta_gamma_given_as_strings_name_the_parameter(where, name,
                                                       lik_file):
    """'0.3' (a string) is refused where it is given."""
    from mmdet3d.registry import DATA_SAMPLERS
    if where == 'hook':
        with pytest.raises(TypeError) as e:
            EquityHook(loss=dict(type='GeneralizedFocalLoss', **{name: '0.3'}))
        owner = 'GeneralizedFocalLoss'
    elif where == 'sampler':
        eq = _build(dict(type='EquityDataset', likelihood_file=lik_file,
                         dataset=toy_cfg()))
        with pytest.raises(TypeError) as e:
            DATA_SAMPLERS.build(
                dict(type='EquityWeightedSampler',
                     loss=dict(SAMPLER_LOSS, **{name: '0.3'})),
                default_args=dict(dataset=eq, seed=0))
        owner = 'GeneralizedFocalLoss'
    else:
        with pytest.raises(TypeError) as e:
            equity_weight(0.5, **{name: '0.3'})
        owner = 'equity_weight'
    assert f"{owner}: {name} must be a number, got '0.3' (str)" in str(e.value)


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
    # numpy numbers are numbers
    g = MODELS.build(dict(type='GeneralizedFocalLoss', eta=np.float32(0.5),
                          gamma=np.int64(2)))
    assert (g.eta, g.gamma) == (0.5, 2.0)
