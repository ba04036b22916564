"""A resume that no hook of the new config can check: the equity/SSB hook
removed, or the resampling mode's sampler settings / likelihood file changed
(read from the config the checkpoint saved). Refused before the Runner is
built, unless --allow-changed-settings (logged, saved in the config)."""
import logging

import pytest
import torch
from mmengine.config import Config

from mmdet3d_equity.apis.resume import check_resume, resume_differences
from mmdet3d_equity.utils.errors import ConfigError

SAMPLER = dict(type='EquityWeightedSampler',
               loss=dict(type='GeneralizedFocalLoss', eta=1.0, gamma=5.0,
                         normalisation='dataset'))


def _cfg(tmp_path, sampler=None, hooks=(), lik='a.npz', **extra):
    loader = dict(dataset=dict(type='EquityDataset', likelihood_file=lik))
    if sampler is not None:
        loader['sampler'] = sampler
    return Config(dict(train_dataloader=loader, custom_hooks=list(hooks),
                       work_dir=str(tmp_path), **extra))


def _checkpoint(tmp_path, saved_cfg, **keys):
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(meta=dict(cfg=saved_cfg.pretty_text), state_dict={},
                    **keys), path)
    return path


def test_removed_equity_hook_is_refused(tmp_path):
    saved = _cfg(tmp_path, hooks=[dict(type='EquityHook')])
    path = _checkpoint(tmp_path, saved, equity_weighting=dict(settings={}))
    new = _cfg(tmp_path, resume=True, load_from=path)
    with pytest.raises(ConfigError) as e:
        check_resume(new)
    msg = str(e.value)
    assert msg.startswith(f'--resume {path}: the checkpoint was trained '
                          'with EquityHook')
    assert 'this config has no EquityHook in custom_hooks' in msg
    assert '--allow-changed-settings' in msg and '\n' not in msg


def test_removed_ssb_hook_is_named_too(tmp_path):
    saved = _cfg(tmp_path)
    ckpt = dict(meta=dict(cfg=saved.pretty_text),
                semantic_scale_balance=dict(settings={}))
    diffs = resume_differences(
        _cfg(tmp_path, hooks=[dict(type='mmdet3d.EquityHook')]), ckpt)
    assert diffs == ["the checkpoint was trained with SemanticScaleBalance"
                     "Hook (it saved 'semantic_scale_balance'), this config "
                     "has no SemanticScaleBalanceHook in custom_hooks"]


def test_resampling_eta_and_file_changes_are_refused(tmp_path):
    saved = _cfg(tmp_path, sampler=SAMPLER)
    path = _checkpoint(tmp_path, saved)
    changed = dict(SAMPLER, loss=dict(SAMPLER['loss'], eta=0.3))
    new = _cfg(tmp_path, sampler=changed, lik='b.npz', resume=True,
               load_from=path)
    with pytest.raises(ConfigError) as e:
        check_resume(new)
    msg = str(e.value)
    assert ('train_dataloader.sampler.loss.eta: 1.0 in the checkpoint, 0.3 '
            'now; ') in msg
    assert 'gamma' not in msg
    assert ("train_dataloader.dataset.likelihood_file: 'a.npz' in the "
            "checkpoint, 'b.npz' now") in msg


def test_opt_in_resumes_and_logs_each_difference(tmp_path, monkeypatch):
    import mmdet3d_equity.apis.resume as resume
    logged = []
    monkeypatch.setattr(resume, 'print_log',
                        lambda msg, **kw: logged.append((msg, kw['level'])))
    saved = _cfg(tmp_path, sampler=SAMPLER)
    path = _checkpoint(tmp_path, saved)
    new = _cfg(tmp_path, sampler=dict(SAMPLER, type='EquityRepeatFactor'
                                      'Sampler'), resume=True,
               load_from=path, allow_changed_settings=True)
    check_resume(new)  # no error
    assert logged == [(
        f'resuming {path} with a change (allowed by --allow-changed-'
        "settings): train_dataloader.sampler.type: 'EquityWeightedSampler' "
        "in the checkpoint, 'EquityRepeatFactorSampler' now",
        logging.WARNING)]


def test_unchanged_and_plain_runs_pass(tmp_path):
    saved = _cfg(tmp_path, sampler=SAMPLER, hooks=[dict(type='EquityHook')])
    path = _checkpoint(tmp_path, saved, equity_weighting={})
    check_resume(_cfg(tmp_path, sampler=SAMPLER,
                      hooks=[dict(type='EquityHook')], resume=True,
                      load_from=path))
    plain = _cfg(tmp_path, sampler=dict(type='DefaultSampler', shuffle=True))
    plain_ckpt = dict(meta=dict(cfg=plain.pretty_text))
    assert resume_differences(
        _cfg(tmp_path, sampler=dict(type='DefaultSampler', shuffle=False)),
        plain_ckpt) == []  # not ours to judge
    check_resume(_cfg(tmp_path))  # no resume: nothing to read


def test_opt_in_needs_resume():
    from _tool_helpers import KITTI_CFG

    from mmdet3d_equity.apis.runner import build_train_config
    with pytest.raises(ConfigError, match='--allow-changed-settings applies '
                       'to a resumed run: give --resume as well'):
        build_train_config(KITTI_CFG, allow_changed_settings=True)
