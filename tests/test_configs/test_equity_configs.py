"""Every equity config (loss weighting, resampling, GFL + SSB) loads,
differs from its stock base only by the equity lines, writes each setting
once (no top-level equity variables; eta/gamma only in the
GeneralizedFocalLoss, the likelihood file only in the EquityDataset), wraps
exactly the base's train dataset, and builds a model whose dense head the
weighting accepts."""
import glob
import os.path as osp

import pytest

import mmdet3d_equity  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    glob.glob(osp.join(REPO, 'configs', '*', '*equity*.py')) +
    glob.glob(osp.join(REPO, 'configs', '*', '*gfl-ssb*.py')))
EQUITY_KEYS = {'custom_imports', 'train_dataloader', 'custom_hooks'}
OLD_VARIABLES = {'likelihood_file', 'equity_eta', 'equity_gamma', 'eta',
                 'gamma'}


def test_expected_configs_exist():
    names = {osp.basename(c) for c in CONFIGS}
    for must in ('pointpillars_hv_secfpn_8xb6-160e_kitti-3d-3class_equity.py',
                 'second_hv_secfpn_8xb6-80e_kitti-3d-3class_equity.py',
                 'smoke_dla34_dlaneck_gn-all_4xb8-6x_kitti-mono3d_equity.py',
                 'pointpillars_hv_fpn_sbn-all_8xb4-2x_nus-3d_equity.py',
                 'centerpoint_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d'
                 '_equity.py',
                 'centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d'
                 '_equity.py',
                 'fcos3d_r101-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d'
                 '_equity.py',
                 'pointpillars_tiny-kitti-3class_equity.py',
                 'pointpillars_tiny-kitti-3class_equity-resample.py',
                 'pointpillars_tiny-kitti-3class_gfl-ssb.py',
                 'pointpillars_hv_secfpn_8xb6-160e_kitti-3d-3class_gfl-ssb.py',
                 'centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d'
                 '_gfl-ssb.py',
                 'centerpoint-pillar_tiny-nus-3d_equity.py'):
        assert must in names, must


def load_base(cfg_path, tmp_path):
    """The config's _base_ loaded the same way (mmdet3d:: scoping included)
    through a file holding only that _base_ line."""
    from mmengine.config import Config
    text = open(cfg_path).read()
    line = [ln for ln in text.splitlines() if ln.startswith('_base_')][0]
    base = line.split('=', 1)[1].split('#')[0].strip().strip('\'"')
    if not base.startswith('mmdet3d::'):
        base = osp.normpath(osp.join(osp.dirname(cfg_path), base))
    only_base = tmp_path / 'only_base.py'
    only_base.write_text(f'_base_ = {base!r}\n')
    return Config.fromfile(str(only_base))


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_equity_config_loads_and_builds(path, monkeypatch, tmp_path):
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config

    from mmdet3d_equity.engine.hooks.equity_hook import EquityHook
    from mmdet3d_equity.models.head_adapters import resolve_dense_head
    from mmdet3d_equity.models.sample_weighting import PerSampleGradWeighting
    monkeypatch.setenv('EQUITY_TINY_KITTI', '/data/tiny_kitti')
    monkeypatch.setenv('EQUITY_TINY_NUS', '/data/tiny_nus')
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(path)
    base = load_base(path, tmp_path)
    # only the equity lines differ from the stock config
    diff = {k for k in set(cfg.keys()) | set(base.keys())
            if cfg.get(k) != base.get(k)}
    assert diff <= EQUITY_KEYS, diff - EQUITY_KEYS
    # one owner per setting: no top-level copies
    assert not OLD_VARIABLES & set(cfg.keys())
    ds = cfg.train_dataloader.dataset
    assert ds.type == 'EquityDataset'
    assert set(ds) == {'type', 'likelihood_file', 'dataset'}
    assert osp.basename(ds.likelihood_file) in (
        'equity_likelihoods.npz', 'equity_likelihoods_mono3d.npz')
    assert ds.dataset == base.train_dataloader.dataset
    resample = 'resample' in osp.basename(path)
    same = {'dataset', 'sampler'} if resample else {'dataset'}
    assert {k: v for k, v in cfg.train_dataloader.items() if k not in same
            } == {k: v for k, v in base.train_dataloader.items()
                  if k not in same}
    assert cfg.val_dataloader == base.val_dataloader
    assert cfg.model == base.model
    hooks = [h for h in cfg.get('custom_hooks', [])
             if h['type'] == 'EquityHook']
    ssb = [h for h in cfg.get('custom_hooks', [])
           if h['type'] == 'SemanticScaleBalanceHook']
    assert len(ssb) == int('gfl-ssb' in osp.basename(path))
    if resample:
        assert not hooks
        sampler = cfg.train_dataloader.sampler
        assert sampler.type == 'EquityWeightedSampler'
        loss = sampler.loss
        assert loss.normalisation == 'dataset'
    else:
        assert len(hooks) == 1 and cfg.custom_hooks[0] == hooks[0]
        loss = hooks[0]['loss']
    assert loss.type == 'GeneralizedFocalLoss'
    assert {'eta', 'gamma'} <= set(loss)
    if resample:
        return
    hook = EquityHook(**{k: v for k, v in hooks[0].items() if k != 'type'})
    assert (hook.gfl.eta, hook.gfl.gamma) == (loss.eta, loss.gamma)
    # the model builds and its head is supported for exact weighting
    model_cfg = cfg.model.copy()
    for key in ('backbone', 'img_backbone'):
        if key in model_cfg and 'init_cfg' in model_cfg[key]:
            model_cfg[key].init_cfg = None  # no pretrained download
    model = MODELS.build(model_cfg)
    head, adapter = resolve_dense_head(model)
    PerSampleGradWeighting(head, terms=hook.gfl.terms, adapter=adapter)
