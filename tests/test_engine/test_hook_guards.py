"""What EquityHook and SemanticScaleBalanceHook guard: settings bound to
their checkpoints (a resume with other settings refused unless asked for,
then recorded), torch hooks removed when training raises, custom_hooks.N
keys that reached the other hook named with the right index, eta given to
the hook instead of its loss, the start-of-training count of zero weights,
and the resampling sampler (its one log line, _delete_=True)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _toy_equity import FRAME_IDS, SAMPLER_LOSS, _build, toy_cfg, write_file
from mmengine.runner import BaseLoop
from test_equity_hook import build_tiny_detector

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity.engine.hooks import EquityHook, SemanticScaleBalanceHook
from mmdet3d_equity.engine.hooks import equity_hook as equity_hook_module
from mmdet3d_equity.utils.errors import ConfigError

SSB_CFG = dict(type='SemanticScaleBalanceHook', warmup_epochs=1)
EQ_CFG = dict(type='EquityHook', loss=dict(type='GeneralizedFocalLoss'))


@pytest.fixture
def eq_dataset(tmp_path):
    lik = write_file(tmp_path / 'equity_likelihoods.npz', FRAME_IDS)
    return _build(dict(type='EquityDataset', likelihood_file=lik,
                       dataset=toy_cfg()), claim=False)


class _Loop(BaseLoop):
    """A train loop whose run() calls before_train and then fails."""

    def __init__(self, runner, hooks, error):
        self._runner, self.hooks, self.error = runner, hooks, error

    def run(self):
        for h in self.hooks:
            h.before_train(self._runner)
        raise self.error


def _runner(model=None, dataset=None, custom_hooks=(), resume=False, it=0):
    runner = SimpleNamespace(
        model=model, iter=it, max_iters=100, _resume=resume,
        cfg=dict(custom_hooks=list(custom_hooks)),
        train_dataloader=SimpleNamespace(dataset=dataset, sampler=None),
        train_loop=SimpleNamespace(), message_hub=None)
    return runner


# ------------------------------------------------ keys in the wrong place
def test_eta_given_to_the_hook_names_its_loss():
    with pytest.raises(TypeError) as e:
        EquityHook(eta=0.5)
    assert str(e.value) == (
        "EquityHook does not take ['eta']: they are settings of its loss: "
        "custom_hooks = [dict(type='EquityHook', loss=dict("
        "type='GeneralizedFocalLoss', eta=0.5))] (override: --cfg-options "
        'custom_hooks.N.loss.eta=...)')
    with pytest.raises(TypeError, match=r"unexpected arguments \['etta'\]"):
        EquityHook(etta=0.5)
    with pytest.raises(TypeError, match=r"unexpected arguments \['etta'\]"):
        SemanticScaleBalanceHook(etta=0.5)


def test_train_tool_says_it_in_one_line(tmp_path, capsys):
    import os.path as osp

    from _tool_helpers import REPO, call_tool
    cfg = osp.join(REPO, 'configs', 'tiny',
                   'pointpillars_tiny-kitti-3class_equity.py')
    rc = call_tool('train', [cfg, '--work-dir', str(tmp_path / 'w'),
                             '--cfg-options', 'custom_hooks.0.eta=0.5'])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and 'Traceback' not in '\n'.join(err)
    assert err[-1] == (
        "train.py: error: EquityHook does not take ['eta']: they are "
        "settings of its loss: custom_hooks = [dict(type='EquityHook', "
        "loss=dict(type='GeneralizedFocalLoss', eta=0.5))] (override: "
        '--cfg-options custom_hooks.N.loss.eta=...)')


def test_a_key_that_reached_the_other_hook_names_the_right_index():
    """README: --cfg-options custom_hooks.0.loss.eta=0.5; with the EquityHook
    second, the key reaches the SSB hook."""
    from mmengine.config import Config
    cfg = Config(dict(custom_hooks=[SSB_CFG, EQ_CFG]))
    cfg.merge_from_dict({'custom_hooks.0.loss.eta': 0.5})
    ssb = SemanticScaleBalanceHook(**{k: v for k, v in
                                      cfg.custom_hooks[0].items()
                                      if k != 'type'})
    runner = _runner(custom_hooks=cfg.custom_hooks)
    with pytest.raises(ConfigError) as e:
        ssb.before_run(runner)
    assert str(e.value) == (
        'custom_hooks.0.loss.eta reached the SemanticScaleBalanceHook '
        "(custom_hooks.0), which has no ['loss']: ['loss'] belong to the "
        "EquityHook (N in custom_hooks.N counts the config's custom_hooks "
        'list from 0); the EquityHook is custom_hooks.1: write '
        'custom_hooks.1.loss.eta=0.5')
    # and an SSB key that reached the EquityHook
    eq = EquityHook(warmup_epochs=2)
    runner = _runner(custom_hooks=[EQ_CFG, SSB_CFG])
    with pytest.raises(ConfigError, match=r'custom_hooks.0.warmup_epochs '
                       r'reached the EquityHook .*the '
                       r'SemanticScaleBalanceHook is custom_hooks.1: write '
                       r'custom_hooks.1.warmup_epochs=2$'):
        eq.before_run(runner)
    with pytest.raises(ConfigError, match='this config has no '
                       'SemanticScaleBalanceHook in custom_hooks: add one'):
        eq.before_run(_runner(custom_hooks=[EQ_CFG]))


# --------------------------------------------- torch hooks after a failure
@pytest.mark.parametrize('error', [RuntimeError('diverged'),
                                   KeyboardInterrupt()])
def test_torch_hooks_are_removed_when_training_raises(eq_dataset, error):
    model = build_tiny_detector()
    head = model.bbox_head
    stock_loss = head.loss_cls
    eq, ssb = EquityHook(), SemanticScaleBalanceHook(warmup_iters=1)
    runner = _runner(model, eq_dataset)

    class Loader(list):
        dataset, sampler = eq_dataset, None

    runner.train_dataloader = Loader([0, 1])
    runner._train_loop = _Loop(runner, [eq, ssb], error)
    for h in (eq, ssb):
        h.before_run(runner)
    with pytest.raises(type(error)):
        runner._train_loop.run()
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert not head._forward_hooks and not head._forward_pre_hooks
    assert head.loss_cls is stock_loss  # SSB's wrapper taken off again
    assert eq_dataset._claims == {}
    assert 'run' not in vars(runner._train_loop)  # the guard is gone too
    # and a test run (no train loop built) is left alone
    test_runner = _runner(model)
    test_runner._train_loop = dict(type='EpochBasedTrainLoop')
    eq.before_run(test_runner)
    assert test_runner._train_loop == dict(type='EpochBasedTrainLoop')


# ---------------------------------------------------- settings on resume
def _saved_checkpoint(hook, runner):
    hook.before_train(runner)
    ckpt = dict(meta=dict(iter=5))
    hook.before_save_checkpoint(runner, ckpt)
    hook.remove()
    return ckpt


def test_equity_resume_with_other_settings_is_refused(eq_dataset, tmp_path):
    model = build_tiny_detector()
    runner = _runner(model, eq_dataset, custom_hooks=[EQ_CFG])
    first = EquityHook(loss=dict(type='GeneralizedFocalLoss', eta=1.0))
    ckpt = _saved_checkpoint(first, runner)
    saved = ckpt['equity_weighting']['settings']
    assert saved == dict(eta=1.0, gamma=5.0, terms='all',
                         normalisation='none',
                         likelihood_content=eq_dataset.content_fingerprint,
                         strict=True, missing='error')
    # the same settings resume silently
    again = EquityHook(loss=dict(type='GeneralizedFocalLoss', eta=1.0))
    resumed = _runner(model, eq_dataset, [EQ_CFG], resume=True, it=5)
    again.after_load_checkpoint(resumed, ckpt)
    again.before_train(resumed)
    again.remove()
    # another eta: refused, naming both values and the option
    other = EquityHook(loss=dict(type='GeneralizedFocalLoss', eta=0.5))
    other.after_load_checkpoint(resumed, ckpt)
    with pytest.raises(ConfigError) as e:
        other.before_train(resumed)
    assert str(e.value) == (
        'EquityHook: the resumed checkpoint was trained with other settings '
        '(eta: 1.0 in the checkpoint, 0.5 now); resuming would continue a '
        'mixed run whose saved config and log show only the new values. '
        'Resume with the settings it was trained with, start a new run '
        '(without --resume), or pass --cfg-options '
        'custom_hooks.0.allow_changed_settings=True to continue with the new '
        'settings (logged, and recorded in the checkpoints).')
    assert not model._forward_pre_hooks  # nothing left installed
    # load_from (a new run from those weights) is not a resume
    fresh = EquityHook(loss=dict(type='GeneralizedFocalLoss', eta=0.5))
    fresh.after_load_checkpoint(_runner(model, eq_dataset), ckpt)
    fresh.before_train(_runner(model, eq_dataset))
    fresh.remove()
    # a re-scored likelihood file is another setting
    rescored = write_file(tmp_path / 'rescored.npz', FRAME_IDS,
                          lik={str(s): 0.5 for s in FRAME_IDS})
    ds2 = _build(dict(type='EquityDataset', likelihood_file=rescored,
                      dataset=toy_cfg()), claim=False)
    hook = EquityHook(loss=dict(type='GeneralizedFocalLoss', eta=1.0))
    hook.after_load_checkpoint(resumed, ckpt)
    with pytest.raises(ConfigError, match=r'\(likelihood_content: '):
        hook.before_train(_runner(model, ds2, [EQ_CFG], resume=True))
    # asked for explicitly: logged, and the change kept in the checkpoints
    ok = EquityHook(loss=dict(type='GeneralizedFocalLoss', eta=0.5),
                    allow_changed_settings=True)
    ok.after_load_checkpoint(resumed, ckpt)
    ok.before_train(resumed)
    later = {}
    ok.before_save_checkpoint(resumed, later)
    ok.remove()
    assert later['equity_weighting']['settings']['eta'] == 0.5
    assert later['equity_weighting']['history'] == [
        dict(iter=5, changes=dict(eta=(1.0, 0.5)))]
    # a checkpoint trained without EquityHook
    plain = EquityHook()
    plain.after_load_checkpoint(resumed, dict(meta=dict(iter=5)))
    with pytest.raises(ConfigError, match=r"\(EquityHook: 'absent' in the "
                       r"checkpoint, 'present' now\)"):
        plain.before_train(resumed)


def test_ssb_resume_with_other_settings_is_refused():
    ssb = SemanticScaleBalanceHook(warmup_epochs=2, alpha=2.0)
    ckpt = dict(meta=dict(iter=7),
                semantic_scale_balance=dict(settings=ssb.settings(),
                                            history=[]))
    resumed = _runner(custom_hooks=[EQ_CFG, SSB_CFG], resume=True)
    same = SemanticScaleBalanceHook(warmup_epochs=2, alpha=2.0)
    same.after_load_checkpoint(resumed, ckpt)
    assert same._pending_state is ckpt['semantic_scale_balance']
    other = SemanticScaleBalanceHook(warmup_epochs=2, alpha=1.5)
    with pytest.raises(ConfigError) as e:
        other.after_load_checkpoint(resumed, ckpt)
    assert str(e.value).startswith(
        'SemanticScaleBalanceHook: the resumed checkpoint was trained with '
        'other settings (alpha: 2.0 in the checkpoint, 1.5 now); ')
    assert 'custom_hooks.1.allow_changed_settings=True' in str(e.value)
    ok = SemanticScaleBalanceHook(warmup_epochs=2, alpha=1.5,
                                  allow_changed_settings=True)
    ok.after_load_checkpoint(resumed, ckpt)
    assert ok.state_dict()['history'] == [
        dict(iter=7, changes=dict(alpha=(2.0, 1.5)))]
    assert ok.state_dict()['settings']['alpha'] == 1.5
    # tools/test.py (load_from, no resume) is not checked
    other.after_load_checkpoint(_runner(), ckpt)


# ------------------------------------------------------- weights of 0
def test_samples_with_weight_zero_are_counted_at_the_start(eq_dataset,
                                                           monkeypatch):
    """eta = 0 (in the paper's grid) gives the most common appearance
    (p = 1) weight 0: allowed, and said at the start of training."""
    logged = []
    monkeypatch.setattr(equity_hook_module, 'print_log',
                        lambda msg, logger=None, level=None:
                        logged.append((msg, level)))
    hook = EquityHook(loss=dict(type='GeneralizedFocalLoss', eta=0.0,
                                gamma=5.0))
    hook._check_dataset(eq_dataset, None)
    p = eq_dataset.index_likelihoods()
    w = (1 - p)**5
    zero, small = int((w == 0).sum()), int((w < 0.01).sum())
    assert zero == 2 and small == 4  # p = 1 twice, p = 0.75 twice
    msg, level = logged[0]
    assert msg == (
        f'EquityHook: W(p) over the 12 train indices (eta=0.0, gamma=5.0): '
        f'mean {w.mean():.4f}, min 0.0000, max 1.0000; 2 of 12 get weight 0 '
        'and 4 a weight below 0.01 (with eta=0 the most common appearance, '
        'p=1, gets W=0: those samples do not train)')
    assert level == 30  # WARNING
    hook.remove()


# ------------------------------------------------------- the sampler
def test_sampler_merged_into_the_base_default_sampler_names_delete(
        eq_dataset, tmp_path):
    from mmdet3d.registry import DATA_SAMPLERS
    from mmengine.config import Config
    (tmp_path / 'base.py').write_text(
        "train_dataloader = dict(sampler=dict(type='DefaultSampler', "
        'shuffle=True))\n')
    (tmp_path / 'child.py').write_text(
        "_base_ = ['base.py']\ntrain_dataloader = dict(sampler=dict("
        "type='EquityWeightedSampler'))\n")
    cfg = Config.fromfile(str(tmp_path / 'child.py'))
    with pytest.raises(TypeError) as e:
        DATA_SAMPLERS.build(cfg.train_dataloader.sampler,
                            default_args=dict(dataset=eq_dataset, seed=0))
    assert str(e.value) == (
        "train_dataloader.sampler: EquityWeightedSampler got ['shuffle'], "
        "inherited from the base config's sampler (a DefaultSampler), "
        'because the config merged its sampler into the base one; write '
        "train_dataloader = dict(sampler=dict(_delete_=True, "
        "type='EquityWeightedSampler', ...)) to replace it.")
    (tmp_path / 'child.py').write_text(
        "_base_ = ['base.py']\ntrain_dataloader = dict(sampler=dict("
        "_delete_=True, type='EquityWeightedSampler'))\n")
    cfg = Config.fromfile(str(tmp_path / 'child.py'))
    DATA_SAMPLERS.build(cfg.train_dataloader.sampler,
                        default_args=dict(dataset=eq_dataset, seed=0))


def test_resampling_mode_logs_one_line_with_its_settings(eq_dataset,
                                                         monkeypatch):
    from mmdet3d.registry import DATA_SAMPLERS

    from mmdet3d_equity.datasets import equity_sampler
    logged = []
    monkeypatch.setattr(equity_sampler, 'print_log',
                        lambda msg, logger=None, level=None:
                        logged.append(msg))
    s = DATA_SAMPLERS.build(dict(type='EquityWeightedSampler',
                                 loss=SAMPLER_LOSS),
                            default_args=dict(dataset=eq_dataset, seed=3))
    w = s.weights.numpy()
    assert logged == [
        'EquityWeightedSampler: resampling mode: 12 draws an epoch (12 per '
        'rank, 1 rank(s)) of the 12 train indices with probability W_i / '
        "sum W (GeneralizedFocalLoss eta=0.3, gamma=2.0, terms='all', "
        "normalisation='dataset'), with replacement, seed 3; no loss "
        f'weighting. W(p) over the 12 train indices (eta=0.3, gamma=2.0): '
        f'mean {w.mean():.4f}, min {w.min():.4f}, max {w.max():.4f}; 0 of '
        '12 get weight 0 and 0 a weight below 0.01']
    np.testing.assert_allclose(
        w, (0.3 + (1 - eq_dataset.index_likelihoods())**2) / 1.3, rtol=1e-12)
    assert torch.is_tensor(s.weights)
