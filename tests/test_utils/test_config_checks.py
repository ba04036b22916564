"""One owner per setting, seen from the command line: --cfg-options on the
one key of a setting changes what runs and what is saved; overrides that
would not reach the Runner (config-file variables, unknown keys, the old
top-level equity variables) are refused naming the right key; the
GeneralizedFocalLoss and the SSB loss placed in a model say where they
belong."""
import os.path as osp

import pytest
import torch

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity import equity_weight

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
EQ_CFG = 'configs/tiny/pointpillars_tiny-kitti-3class_equity.py'
RS_CFG = 'configs/tiny/pointpillars_tiny-kitti-3class_equity-resample.py'
SSB_CFG = 'configs/tiny/pointpillars_tiny-kitti-3class_ssb.py'
GS_CFG = 'configs/tiny/pointpillars_tiny-kitti-3class_gfl-ssb.py'


@pytest.fixture
def train_tool(monkeypatch):
    monkeypatch.setenv('EQUITY_TINY_KITTI', '/data/tiny_kitti')
    monkeypatch.chdir(REPO)
    from mmdet3d_equity.cli import train
    return train


def _cfg(train_tool, config, *options):
    args = [config] + (['--cfg-options', *options] if options else [])
    return train_tool.build_cfg(train_tool.parse_args(args))


def test_eta_override_changes_the_weights_and_the_saved_config(train_tool,
                                                               tmp_path):
    from mmdet3d.registry import HOOKS
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmdet3d_equity.engine.hooks import EquityHook
    p = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    default = HOOKS.build(_cfg(train_tool, EQ_CFG).custom_hooks[0])
    cfg = _cfg(train_tool, EQ_CFG, 'custom_hooks.0.loss.eta=0.3',
               f'work_dir={tmp_path}', 'experiment_name=eta_override')
    hook = HOOKS.build(cfg.custom_hooks[0])
    assert (default.gfl.eta, hook.gfl.eta) == (1.0, 0.3)
    torch.testing.assert_close(
        hook.gfl.weights(p),
        torch.tensor([equity_weight(x, 0.3, 5.0) for x in p.tolist()],
                     dtype=torch.float64), rtol=1e-15, atol=0)
    assert not torch.allclose(hook.gfl.weights(p), default.gfl.weights(p))
    # what the Runner builds and what it saves
    runner = Runner.from_cfg(cfg)
    built = [h for h in runner.hooks if isinstance(h, EquityHook)]
    assert len(built) == 1 and built[0].gfl.eta == 0.3
    saved = Config.fromfile(osp.join(str(tmp_path), osp.basename(EQ_CFG)))
    assert saved.custom_hooks[0].loss.eta == 0.3
    assert HOOKS.build(saved.custom_hooks[0]).gfl.eta == 0.3
    assert saved.train_dataloader == cfg.train_dataloader
    del runner, built


def test_each_setting_has_one_key(train_tool):
    cfg = _cfg(train_tool, EQ_CFG,
               'train_dataloader.dataset.likelihood_file=/x/l.npz',
               'custom_hooks.0.loss.gamma=2.0',
               "custom_hooks.0.loss.normalisation=dataset")
    assert cfg.train_dataloader.dataset.likelihood_file == '/x/l.npz'
    assert cfg.custom_hooks[0].loss == dict(
        type='GeneralizedFocalLoss', eta=1.0, gamma=2.0,
        normalisation='dataset')
    rs = _cfg(train_tool, RS_CFG, 'train_dataloader.sampler.loss.eta=0.5')
    assert rs.train_dataloader.sampler.loss.eta == 0.5
    ssb = _cfg(train_tool, SSB_CFG, 'custom_hooks.0.warmup_iters=3')
    assert ssb.custom_hooks[0].warmup_iters == 3


@pytest.mark.parametrize('config, option, message', [
    (EQ_CFG, 'eta=0.3',
     "--cfg-options eta=0.3: 'eta' is neither a key of this "
     "config nor a setting of MMEngine's Runner: it would be added to the "
     'saved config and ignored. This config sets eta once, at '
     'custom_hooks.0.loss.eta: override that key, e.g. --cfg-options '
     'custom_hooks.0.loss.eta=...'),
    (GS_CFG, 'gamma=2',
     'This config sets gamma once, at custom_hooks.0.loss.gamma: override '
     'that key'),
    (RS_CFG, 'eta=0.3',
     'This config sets eta once, at train_dataloader.sampler.loss.eta'),
    (EQ_CFG, 'likelihood_file=/x/l.npz',
     'This config sets likelihood_file once, at '
     'train_dataloader.dataset.likelihood_file'),
    (SSB_CFG, 'warmup_epochs=2',
     'This config sets warmup_epochs once, at custom_hooks.0.warmup_epochs'),
    (EQ_CFG, 'lr=0.1',
     "--cfg-options lr=0.1: 'lr' is a variable of the config file: MMEngine "
     'substituted its value where the file uses it when the file was '
     'parsed, so overriding it would change nothing that runs (while the '
     'saved config showed the new value). Override the Runner keys that '
     'hold its value instead: optim_wrapper.optimizer.lr'),
    (EQ_CFG, 'train_pipeline.0.load_dim=5',
     "'train_pipeline' is a variable of the config file"),
    (EQ_CFG, 'custom_hooks_typo=1',
     "'custom_hooks_typo' is neither a key of this config nor a setting"),
    # a name of no setting: the generic fix, no guessed key
    (EQ_CFG, 'equity_eta=0.3',
     "'equity_eta' is neither a key of this config nor a setting of "
     "MMEngine's Runner: it would be added to the saved config and ignored."
     ' Override the Runner setting that uses it instead'),
    ('configs/tiny/pointpillars_tiny-kitti-3class.py', 'eta=0.3',
     'This config has no eta setting: DatasetEquity is configured by '
     "custom_hooks=[dict(type='EquityHook'"),
    # a variable whose value the file substituted: the keys holding it
    ('configs/tiny/pointpillars_tiny-kitti-3class.py', 'data_root=/other/',
     "'data_root' is a variable of the config file: MMEngine substituted "
     'its value where the file uses it when the file was parsed, so '
     'overriding it would change nothing that runs (while the saved config '
     'showed the new value). Override the Runner keys that hold its value '
     'instead: train_dataloader.dataset.dataset.data_root, '),
    # an override the SSB hook would ignore: its config sets warmup_iters
    (SSB_CFG, 'custom_hooks.0.warmup_epochs=5',
     '--cfg-options custom_hooks.0.warmup_epochs=5: custom_hooks.0 '
     '(SemanticScaleBalanceHook) sets warmup_iters=4, which takes '
     'precedence over warmup_epochs, so this override would change nothing '
     'that runs. To use warmup_epochs, also pass --cfg-options '
     'custom_hooks.0.warmup_iters=None; to change the run as configured, '
     'override custom_hooks.0.warmup_iters.'),
])
def test_overrides_that_would_not_run_are_refused(train_tool, config, option,
                                                  message, capsys):
    from mmdet3d_equity.utils.config import ConfigError
    with pytest.raises(ConfigError) as e:
        _cfg(train_tool, config, option)
    assert message in str(e.value)
    # through the command line: one error line with the message (exit
    # status 2), nothing started
    with pytest.raises(SystemExit) as e:
        train_tool.main([config, '--cfg-options', option])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_warmup_epochs_override_changes_the_run_with_warmup_iters_none(
        train_tool):
    from mmdet3d.registry import HOOKS
    cfg = _cfg(train_tool, SSB_CFG, 'custom_hooks.0.warmup_iters=None',
               'custom_hooks.0.warmup_epochs=5')
    hook = HOOKS.build(cfg.custom_hooks[0])
    assert (hook.warmup_epochs, hook.warmup_iters) == (5, None)
    configured = HOOKS.build(_cfg(train_tool, SSB_CFG).custom_hooks[0])
    assert (configured.warmup_epochs, configured.warmup_iters) == (None, 4)


def test_runner_settings_pass(train_tool):
    cfg = _cfg(train_tool, EQ_CFG, 'randomness.seed=3', 'load_from=None',
               'env_cfg.dist_cfg.backend=gloo', 'train_cfg.max_epochs=2',
               'default_hooks.logger.interval=1')
    assert cfg.randomness.seed == 3 and cfg.train_cfg.max_epochs == 2


# ---------------------------------------------------------------------------
# Losses that belong elsewhere
# ---------------------------------------------------------------------------
def test_gfl_as_a_head_loss_in_a_config_is_refused(train_tool):
    from mmdet3d_equity.utils.config import ConfigError
    with pytest.raises(ConfigError) as e:
        _cfg(train_tool, 'configs/tiny/pointpillars_tiny-kitti-3class.py',
             'model.bbox_head.loss_cls.type=GeneralizedFocalLoss')
    msg = str(e.value)
    assert msg.startswith('model.bbox_head.loss_cls is a GeneralizedFocalLoss'
                          '. GeneralizedFocalLoss is not a head loss')
    assert "custom_hooks = [dict(type='EquityHook', loss=dict(" in msg


def test_gfl_built_as_a_head_loss_says_where_it_belongs():
    """Heads that build their loss_cls (CenterHead, the mono heads) get a
    clear error from the loss itself, not an AttributeError inside."""
    from _model_cfgs import _center_head_cfg
    from mmdet3d.registry import MODELS
    head = MODELS.build(_center_head_cfg(
        dict(type='GeneralizedFocalLoss', eta=1.0, gamma=5.0)))
    feats = [torch.randn(1, 16, 32, 32)]
    from mmdet3d.structures import LiDARInstance3DBoxes
    from mmengine.structures import InstanceData
    inst = InstanceData()
    inst.bboxes_3d = LiDARInstance3DBoxes(torch.tensor(
        [[1., 2., 0., 4., 2., 1.5, 0.3, 0., 0.]]), box_dim=9)
    inst.labels_3d = torch.tensor([0])
    with pytest.raises(TypeError) as e:
        head.loss_by_feat(head(feats), [inst])
    msg = str(e.value)
    assert "GeneralizedFocalLoss.forward got ['avg_factor']" in msg
    assert 'GeneralizedFocalLoss is not a head loss' in msg
    assert "custom_hooks = [dict(type='EquityHook'" in msg
    with pytest.raises(AttributeError, match='is not a head loss'):
        head.loss_cls.use_sigmoid
