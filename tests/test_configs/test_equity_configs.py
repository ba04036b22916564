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
# configs inheriting mmdetection3d's projects/ configs (not in the wheel):
# resolved against the checkout named by MMDET3D_ROOT
PROJECT_CONFIGS = [
    c for c in CONFIGS + sorted(glob.glob(osp.join(REPO, 'configs', '*',
                                                   '*_ssb.py')))
    if '{{$MMDET3D_ROOT' in open(c).read()]
CONFIGS = [c for c in CONFIGS if c not in PROJECT_CONFIGS]
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
                 'centerpoint-pillar_tiny-nus-3d_equity.py',
                 'pv_rcnn_8xb2-80e_kitti-3d-3class_equity.py',
                 'parta2_hv_secfpn_8xb2-cyclic-80e_kitti-3d-3class'
                 '_equity.py',
                 'ssn_hv_secfpn_sbn-all_16xb2-2x_nus-3d_equity.py',
                 'pointpillars_hv_fpn_head-free-anchor_sbn-all_8xb4-2x'
                 '_nus-3d_equity.py'):
        assert must in names, must
    projects = {osp.basename(c) for c in PROJECT_CONFIGS}
    assert projects == {
        'bevfusion_lidar_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d'
        '_equity.py',
        'bevfusion_lidar_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d'
        '_ssb.py',
        'petr_vovnet_gridmask_p4_800x320_equity.py'}


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
    from mmdet3d_equity.models.sample_weighting import DetectorWeighting
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
    DetectorWeighting(model, terms=hook.gfl.terms)


# ---------------------------------------------------------------------------
# projects/ configs (BEVFusion, PETR)
# ---------------------------------------------------------------------------
PROJECT_BASES = {
    'bevfusion': ('projects/BEVFusion/configs/bevfusion_lidar_voxel0075_'
                  'second_secfpn_8xb4-cyclic-20e_nus-3d.py',
                  'projects.BEVFusion.bevfusion'),
    'petr': ('projects/PETR/configs/petr_vovnet_gridmask_p4_800x320.py',
             'projects.PETR.petr'),
}
ROOT_PREFIX = ('{{$MMDET3D_ROOT:SET_MMDET3D_ROOT_TO_YOUR_MMDETECTION3D_'
               'CHECKOUT}}/')


def _project_of(path):
    return osp.basename(path).split('_')[0]


def _own_lines(path):
    """The config's own assignments (its _base_ not loaded): the file run
    with the base placeholder replaced by a marker."""
    text = open(path).read().replace('{{_base_.train_dataloader.dataset}}',
                                     "'<base train dataset>'")
    scope = {}
    exec(compile(text, path, 'exec'), {}, scope)
    return scope


@pytest.mark.parametrize('path', PROJECT_CONFIGS, ids=osp.basename)
def test_project_config_lines(path):
    """Without a checkout: the config's own lines are only the equity (or
    SSB) lines, keep the base's custom import and hook, and name the base
    under MMDET3D_ROOT."""
    base_rel, package = PROJECT_BASES[_project_of(path)]
    own = _own_lines(path)
    assert set(own) <= EQUITY_KEYS | {'_base_'}, set(own)
    assert own['_base_'] == ROOT_PREFIX + base_rel
    assert own['custom_imports'] == dict(
        imports=[package, 'mmdet3d_equity'], allow_failed_imports=False)
    hooks = own['custom_hooks']
    ssb = osp.basename(path).endswith('_ssb.py')
    mine = [h for h in hooks if h['type'] ==
            ('SemanticScaleBalanceHook' if ssb else 'EquityHook')]
    assert len(mine) == 1 and hooks[-1] is mine[0]
    if ssb:
        assert 'train_dataloader' not in own
        return
    assert own['train_dataloader'] == dict(dataset=dict(
        _delete_=True, type='EquityDataset',
        likelihood_file='data/nuscenes/equity_likelihoods.npz',
        dataset='<base train dataset>'))
    loss = mine[0]['loss']
    assert loss['type'] == 'GeneralizedFocalLoss'
    assert {'eta', 'gamma'} <= set(loss)


def _checkout():
    import os
    root = os.environ.get('MMDET3D_ROOT')
    if not root or not osp.isdir(osp.join(root, 'projects')):
        pytest.skip('MMDET3D_ROOT does not point at an mmdetection3d 1.4 '
                    'checkout (with projects/); set it to check the '
                    'projects configs against their bases')
    return root


@pytest.mark.parametrize('path', PROJECT_CONFIGS, ids=osp.basename)
def test_project_config_against_its_base(path, tmp_path):
    """With MMDET3D_ROOT: the config differs from its stock base only by
    the equity keys, keeps the base's imports and hooks (in order), wraps
    exactly the base's train dataset, and -- where the project's code
    imports on CPU (PETR; BEVFusion's package needs its compiled ops) --
    builds a model whose heads the weighting accepts."""
    import importlib
    import sys

    from mmengine.config import Config
    root = _checkout()
    cfg = Config.fromfile(path, import_custom_modules=False)
    base = load_base_projects(path, tmp_path)
    diff = {k for k in set(cfg.keys()) | set(base.keys())
            if cfg.get(k) != base.get(k)}
    assert diff <= EQUITY_KEYS, diff - EQUITY_KEYS
    assert cfg.model == base.model
    assert cfg.custom_imports.imports == (
        list(base.custom_imports.imports) + ['mmdet3d_equity'])
    base_hooks = list(base.get('custom_hooks', []))
    assert cfg.custom_hooks[:len(base_hooks)] == base_hooks
    assert len(cfg.custom_hooks) == len(base_hooks) + 1
    if not osp.basename(path).endswith('_ssb.py'):
        ds = cfg.train_dataloader.dataset
        assert ds.type == 'EquityDataset'
        assert ds.dataset == base.train_dataloader.dataset
    package = PROJECT_BASES[_project_of(path)][1]
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        importlib.import_module(package)
    except ImportError as e:
        assert package == 'projects.BEVFusion.bevfusion', e
        return  # BEVFusion's package imports its compiled CUDA ops
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules

    from mmdet3d_equity.models.sample_weighting import DetectorWeighting
    register_all_modules(init_default_scope=True)
    model_cfg = cfg.model.copy()
    for key in ('backbone', 'img_backbone'):
        if key in model_cfg and 'init_cfg' in model_cfg[key]:
            model_cfg[key].init_cfg = None
    model = MODELS.build(model_cfg)
    weighting = DetectorWeighting(model)
    assert type(weighting.adapter).__name__ == 'PETRHeadAdapter'


def load_base_projects(cfg_path, tmp_path):
    """The projects config's _base_ (MMDET3D_ROOT substituted by mmengine),
    loaded without importing the project's modules."""
    from mmengine.config import Config
    text = open(cfg_path).read()
    line = [ln for ln in text.splitlines() if ln.startswith('_base_')][0]
    only_base = tmp_path / 'only_base.py'
    only_base.write_text(line.split('#')[0] + '\n')
    return Config.fromfile(str(only_base), import_custom_modules=False)
