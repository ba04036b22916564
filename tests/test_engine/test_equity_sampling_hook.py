"""EquitySamplingHook binds the resampling mode to its checkpoints: the
sampler's settings and the likelihood file's content are saved, and a
resume that changes them -- a file re-scored under the same path, which the
saved config cannot show -- is refused unless asked for."""
from types import SimpleNamespace

import pytest
from _toy_equity import FRAME_IDS, SAMPLER_LOSS, _build, toy_cfg, write_file
from mmdet3d.registry import DATA_SAMPLERS

import mmdet3d_equity  # noqa: F401
from mmdet3d_equity.engine.hooks import EquitySamplingHook
from mmdet3d_equity.utils.errors import ConfigError

HOOK = dict(type='EquitySamplingHook')


def _dataset(path, lik=None):
    # likelihoods in (0, 1] (the repeat factor needs p > 0)
    lik = lik or {str(s): (k % 5 + 1) / 5 for k, s in enumerate(FRAME_IDS)}
    f = write_file(path, FRAME_IDS, lik=lik)
    return _build(dict(type='EquityDataset', likelihood_file=f,
                       dataset=toy_cfg()), claim=False)


def _sampler(dataset, cfg):
    return DATA_SAMPLERS.build(cfg, default_args=dict(dataset=dataset,
                                                      seed=0))


def _runner(sampler, resume=False, it=0, hooks=(HOOK,)):
    return SimpleNamespace(
        iter=it, _resume=resume, cfg=dict(custom_hooks=list(hooks)),
        train_loop=SimpleNamespace(),
        train_dataloader=SimpleNamespace(dataset=sampler.dataset,
                                         sampler=sampler))


def _checkpoint(sampler):
    hook = EquitySamplingHook()
    runner = _runner(sampler)
    hook.before_train(runner)
    ckpt = dict(meta=dict(iter=5))
    hook.before_save_checkpoint(runner, ckpt)
    return ckpt


WEIGHTED = dict(type='EquityWeightedSampler', loss=SAMPLER_LOSS)
REPEAT = dict(type='EquityRepeatFactorSampler', threshold=0.5)


def test_identities_hold_settings_and_content(tmp_path):
    ds = _dataset(tmp_path / 'a.npz')
    assert _sampler(ds, WEIGHTED).identity() == dict(
        sampler='EquityWeightedSampler', eta=0.3, gamma=2.0, terms='all',
        normalisation='dataset', num_samples=12,
        likelihood_content=ds.content_fingerprint, strict=True,
        missing='error')
    ds2 = _dataset(tmp_path / 'b.npz')
    assert _sampler(ds2, REPEAT).identity() == dict(
        sampler='EquityRepeatFactorSampler', threshold=0.5,
        likelihood_content=ds2.content_fingerprint, strict=True,
        missing='error')
    assert _checkpoint(_sampler(ds2, REPEAT))['equity_sampling'] == dict(
        settings=_sampler(ds2, REPEAT).identity(), history=[])
    # the hook claims the wrapper for the sampler (without it the wrapper
    # refuses to serve training samples: test_equity_checks)
    assert ds2._claims == dict(sampling='EquityRepeatFactorSampler',
                               binding='EquitySamplingHook')


@pytest.mark.parametrize('cfg', [WEIGHTED, REPEAT])
def test_rescored_file_under_the_same_path_is_refused(tmp_path, cfg):
    path = tmp_path / 'equity_likelihoods.npz'
    ckpt = _checkpoint(_sampler(_dataset(path), cfg))
    # the same file resumes silently
    same = EquitySamplingHook()
    runner = _runner(_sampler(_dataset(path), cfg), resume=True, it=5)
    same.after_load_checkpoint(runner, ckpt)
    same.before_train(runner)
    # re-scored: same path, other likelihoods
    rescored = _dataset(path, lik={str(s): 0.5 for s in FRAME_IDS})
    old = ckpt['equity_sampling']['settings']['likelihood_content']
    new = rescored.content_fingerprint
    assert old != new
    hook = EquitySamplingHook()
    runner = _runner(_sampler(rescored, cfg), resume=True, it=5,
                     hooks=[dict(type='EquityHook'), HOOK])
    hook.after_load_checkpoint(runner, ckpt)
    with pytest.raises(ConfigError) as e:
        hook.before_train(runner)
    assert str(e.value) == (
        'EquitySamplingHook: the resumed checkpoint was trained with other '
        f"settings (likelihood_content: {old!r} in the checkpoint, {new!r} "
        'now); resuming would continue a mixed run whose saved config and '
        'log show only the new values. Resume with the settings it was '
        'trained with, start a new run (without --resume), or pass '
        '--cfg-options custom_hooks.1.allow_changed_settings=True to '
        'continue with the new settings (logged, and recorded in the '
        'checkpoints).')
    # asked for: trains on, and the change is kept in the checkpoints
    ok = EquitySamplingHook(allow_changed_settings=True)
    ok.after_load_checkpoint(runner, ckpt)
    ok.before_train(runner)
    later = {}
    ok.before_save_checkpoint(runner, later)
    assert later['equity_sampling']['settings']['likelihood_content'] == new
    assert later['equity_sampling']['history'] == [
        dict(iter=5, changes=dict(likelihood_content=(old, new)))]


def test_other_threshold_absent_key_and_load_from(tmp_path):
    ds = _dataset(tmp_path / 'a.npz')
    ckpt = _checkpoint(_sampler(ds, REPEAT))
    other = _sampler(ds, dict(REPEAT, threshold=0.8))
    hook = EquitySamplingHook()
    hook.after_load_checkpoint(_runner(other, resume=True), ckpt)
    with pytest.raises(ConfigError, match=r'\(threshold: 0.5 in the '
                       r'checkpoint, 0.8 now\)'):
        hook.before_train(_runner(other, resume=True))
    # a checkpoint trained without the hook
    hook = EquitySamplingHook()
    hook.after_load_checkpoint(_runner(other, resume=True), dict(meta={}))
    with pytest.raises(ConfigError, match=r"\(EquitySamplingHook: 'absent' "
                       r"in the checkpoint, 'present' now\)"):
        hook.before_train(_runner(other, resume=True))
    # load_from (new run from those weights) is not a resume
    fresh = EquitySamplingHook()
    fresh.after_load_checkpoint(_runner(other), ckpt)
    fresh.before_train(_runner(other))


def test_hook_without_a_resampling_sampler_is_refused():
    runner = SimpleNamespace(iter=0, _resume=False, cfg={},
                             train_dataloader=SimpleNamespace(
                                 dataset=None, sampler=object()))
    with pytest.raises(ConfigError) as e:
        EquitySamplingHook().before_train(runner)
    assert str(e.value) == (
        'EquitySamplingHook binds a resampling run to its checkpoints, but '
        'train_dataloader.sampler is object: use EquityWeightedSampler or '
        'EquityRepeatFactorSampler, or remove EquitySamplingHook from '
        'custom_hooks')


def test_train_tool_adds_the_hook_to_a_resampling_config(caplog):
    from mmengine.config import Config

    from mmdet3d_equity.apis.runner import bind_resampling

    def cfg(sampler, hooks=(), **kw):
        return Config(dict(train_dataloader=dict(sampler=sampler),
                           custom_hooks=list(hooks), **kw))

    c = cfg(dict(type='mmdet3d.EquityRepeatFactorSampler'),
            hooks=[dict(type='EMAHook')])
    bind_resampling(c)
    assert c.custom_hooks == [dict(type='EMAHook'),
                              dict(type='EquitySamplingHook',
                                   allow_changed_settings=False)]
    # --allow-changed-settings reaches the hook it adds
    c = cfg(dict(type='EquityWeightedSampler'), allow_changed_settings=True)
    bind_resampling(c)
    assert c.custom_hooks[-1]['allow_changed_settings'] is True
    # ... and the hook the config lists already
    c = cfg(dict(type='EquityWeightedSampler'), hooks=[dict(HOOK)],
            allow_changed_settings=True)
    bind_resampling(c)
    assert c.custom_hooks == [dict(HOOK, allow_changed_settings=True)]
    # present already, or no resampling: unchanged
    for c in (cfg(dict(type='EquityWeightedSampler'), hooks=[HOOK]),
              cfg(dict(type='DefaultSampler', shuffle=True))):
        before = list(c.custom_hooks)
        bind_resampling(c)
        assert c.custom_hooks == before
