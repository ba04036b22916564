import importlib

import numpy as np
import pytest


def test_import_registers_and_version():
    mod = importlib.import_module('mmdet3d_equity')
    assert isinstance(mod.__version__, str) and mod.__version__.count('.') == 2


def test_equity_weight_matches_formula():
    from mmdet3d_equity import equity_weight
    for eta in (0.0, 0.3, 1.0, 3.0):
        for gamma in (0.0, 2.0, 5.0):
            for p in (0.0, 0.3, 1.0):
                expected = (eta + (1.0 - p) ** gamma) / (eta + 1.0)
                assert equity_weight(p, eta, gamma) == pytest.approx(
                    expected, rel=1e-12, abs=1e-15)
    # hand values: eta=1, gamma=5, p=0.3 -> (1 + 0.7^5) / 2
    assert equity_weight(0.3) == pytest.approx((1 + 0.16807) / 2)
    assert equity_weight(1.0, eta=1.0, gamma=5.0) == pytest.approx(0.5)
    assert equity_weight(0.0, eta=1.0, gamma=5.0) == pytest.approx(1.0)


def test_equity_weight_array_and_tensor_agree():
    import torch

    from mmdet3d_equity import equity_weight
    p = np.array([0.0, 0.1, 0.5, 1.0])
    w_np = equity_weight(p, 0.5, 2.0)
    w_t = equity_weight(torch.tensor(p), 0.5, 2.0)
    np.testing.assert_allclose(w_t.numpy(), w_np, rtol=1e-12)


@pytest.mark.parametrize('bad,message', [
    (np.nan, 'equity_weight: p contains NaN or inf'),
    (-0.1, 'equity_weight: likelihoods p must lie in [0, 1]'),
    (1.5, 'equity_weight: likelihoods p must lie in [0, 1]')])
def test_equity_weight_rejects_bad_likelihood(bad, message):
    from mmdet3d_equity import equity_weight
    with pytest.raises(ValueError) as exc:
        equity_weight(np.array([0.2, bad]))
    assert str(exc.value) == message


def test_equity_weight_rejects_bad_params():
    from mmdet3d_equity import equity_weight
    with pytest.raises(ValueError) as exc:
        equity_weight(0.5, eta=-1)
    assert str(exc.value) == \
        'equity_weight: eta must be a finite number >= 0, got -1'
    with pytest.raises(ValueError) as exc:
        equity_weight(0.5, gamma=float('nan'))
    assert str(exc.value) == \
        'equity_weight: gamma must be a finite number >= 0, got nan'


def test_custom_imports_registers_everything_in_mmdet3d_registries():
    """What a config's custom_imports line does: the plugin's modules appear
    in mmdet3d's registries (plain type names under default_scope mmdet3d),
    with names distinct from mmdet's own losses."""
    from mmdet3d.registry import DATA_SAMPLERS, DATASETS, HOOKS, MODELS
    from mmengine.config import Config
    from mmengine.utils import import_modules_from_strings
    cfg = Config(dict(custom_imports=dict(imports=['mmdet3d_equity'],
                                          allow_failed_imports=False)))
    import_modules_from_strings(**cfg.custom_imports)
    assert DATASETS.get('EquityDataset') is not None
    assert DATA_SAMPLERS.get('EquityWeightedSampler') is not None
    assert MODELS.get('GeneralizedFocalLoss') is not None
    assert MODELS.get('SemanticScaleBalancedLoss') is not None
    assert HOOKS.get('EquityHook') is not None
    assert HOOKS.get('SemanticScaleBalanceHook') is not None
    assert HOOKS.get('EquitySamplingHook') is not None
    assert DATA_SAMPLERS.get('EquityRepeatFactorSampler') is not None
    # mmdet's unrelated "GFL" (QualityFocalLoss) is untouched and distinct
    from mmdet.registry import MODELS as MMDET_MODELS
    assert MMDET_MODELS.get('QualityFocalLoss') is not \
        MODELS.get('GeneralizedFocalLoss')
    assert 'GeneralizedFocalLoss' not in MMDET_MODELS.module_dict
