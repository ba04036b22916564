"""What a resumed run was trained with that no hook of the new config can
check.

EquityHook and SemanticScaleBalanceHook keep their settings in every
checkpoint and refuse a resume with other settings themselves. Two changes
leave no hook to notice them:

* the hook was removed from the config (a checkpoint trained with equity
  weights or SSB, resumed as a plain run);
* the resampling mode (``EquityWeightedSampler`` /
  ``EquityRepeatFactorSampler``) switched on or off, or its sampler
  settings / likelihood file path changed: read here from the config the
  checkpoint saved (``meta['cfg']``, written by MMEngine's Runner). The
  content of its likelihood file (a file re-scored under the same path) is
  checked by EquitySamplingHook, which ``tools/train.py`` adds to every
  resampling config.

Both are refused before the Runner is built, naming the difference and the
explicit opt-in (``tools/train.py --allow-changed-settings``; it is saved in
the config as ``allow_changed_settings = True`` and logged).
"""
import logging
import os.path as osp
from typing import List, Optional

from mmengine.logging import print_log

from ..utils.errors import ConfigError

#: checkpoint key of each hook (engine/hooks/*: CKPT_KEY) -> the hook type
HOOK_CKPT_KEYS = {'equity_weighting': 'EquityHook',
                  'semantic_scale_balance': 'SemanticScaleBalanceHook',
                  'equity_sampling': 'EquitySamplingHook'}
EQUITY_SAMPLERS = ('EquityWeightedSampler', 'EquityRepeatFactorSampler')
OPT_IN = ('pass --allow-changed-settings to tools/train.py to resume with '
          'the change anyway (it is logged and saved in the config), or '
          'train anew in another --work-dir')


def type_name(node) -> str:
    """The registry name of a config dict's ``type`` (no scope)."""
    t = node.get('type', '') if isinstance(node, dict) else ''
    t = t if isinstance(t, str) else getattr(t, '__name__', str(t))
    return t.split('.')[-1]


def _leaves(node, prefix: str) -> dict:
    if isinstance(node, dict) and node:
        out = {}
        for k, v in node.items():
            out.update(_leaves(v, f'{prefix}.{k}'))
        return out
    return {prefix: node}


def resumed_checkpoint(cfg) -> Optional[str]:
    """The checkpoint a config with ``resume=True`` continues from (the
    latest of its work dir when ``load_from`` is not set, as MMEngine does),
    or None."""
    if not cfg.get('resume'):
        return None
    path = cfg.get('load_from')
    if path is None:
        from mmengine.runner import find_latest_checkpoint
        path = find_latest_checkpoint(cfg.work_dir)
    return path if path and osp.isfile(path) else None


def resume_differences(cfg, checkpoint: dict) -> List[str]:
    """What differs between the run the checkpoint was trained with and
    ``cfg`` that no hook of ``cfg`` checks."""
    hooks = {type_name(h) for h in cfg.get('custom_hooks') or []}
    out = [f'the checkpoint was trained with {hook} (it saved '
           f"'{key}'), this config has no {hook} in custom_hooks"
           for key, hook in HOOK_CKPT_KEYS.items()
           if key in checkpoint and hook not in hooks]
    saved_text = (checkpoint.get('meta') or {}).get('cfg')
    if not isinstance(saved_text, str):
        return out
    from mmengine.config import Config
    try:
        saved = Config.fromstring(saved_text, '.py')
    except Exception as e:  # a config MMEngine wrote, but not ours to trust
        out.append(f'the config saved in the checkpoint cannot be read '
                   f'({type(e).__name__}: {e})')
        return out

    def sampler_and_file(c):
        loader = c.get('train_dataloader') or {}
        sampler = dict(loader.get('sampler') or {})
        dataset = loader.get('dataset') or {}
        return sampler, (dataset.get('likelihood_file')
                         if isinstance(dataset, dict) else None)

    old, old_file = sampler_and_file(saved)
    new, new_file = sampler_and_file(cfg)
    old_type, new_type = type_name(old), type_name(new)
    if old_type in EQUITY_SAMPLERS or new_type in EQUITY_SAMPLERS:
        if old_type != new_type:
            out.append(f'train_dataloader.sampler.type: {old_type!r} in the '
                       f'checkpoint, {new_type!r} now')
        old = _leaves({k: v for k, v in old.items() if k != 'type'},
                      'train_dataloader.sampler')
        new = _leaves({k: v for k, v in new.items() if k != 'type'},
                      'train_dataloader.sampler')
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                out.append(f'{key}: {old.get(key)!r} in the checkpoint, '
                           f'{new.get(key)!r} now')
        if old_file != new_file:
            out.append(f'train_dataloader.dataset.likelihood_file: '
                       f'{old_file!r} in the checkpoint, {new_file!r} now')
    return out


def check_resume(cfg, logger=None) -> None:
    """Refuse a resume whose checkpoint was trained with settings the new
    config changes and no hook checks (see module doc), unless
    ``cfg.allow_changed_settings``; with it, each difference is logged."""
    path = resumed_checkpoint(cfg)
    if path is None:
        return
    from mmengine.runner import CheckpointLoader
    checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    diffs = resume_differences(cfg, checkpoint)
    if not diffs:
        return
    if cfg.get('allow_changed_settings', False) is True:
        for d in diffs:
            print_log(f'resuming {path} with a change (allowed by '
                      f'--allow-changed-settings): {d}', logger='current',
                      level=logging.WARNING)
        return
    raise ConfigError(f'--resume {path}: ' + '; '.join(diffs) + f'. '
                      f'{OPT_IN}')
