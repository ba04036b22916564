"""Checks of a training config and its ``--cfg-options`` before anything is
built, so that what runs is what the (saved) config says.

* :func:`check_runner_options`: MMEngine substitutes a config file's own
  variables (``lr = 0.003`` used in ``optim_wrapper``, an old
  ``equity_eta`` used in a hook) where they are used when the file is
  parsed. ``--cfg-options lr=0.01`` then changes nothing that runs, yet the
  saved config shows the new value; a key the config does not have at all
  is added and ignored. Only the settings the Runner reads may be overridden
  at top level; anything else is refused naming the key to use (for the
  DatasetEquity and SSB settings, the exact key of their one owner).
* :func:`check_model_losses`: the GeneralizedFocalLoss and the SSB loss are
  not head losses; in a model config they would silently build a different
  head (Anchor3DHead picks its sampler from the loss type name) or fail deep
  inside it. Refused, saying where they belong.
"""
from typing import Dict, List, Optional

from .errors import ConfigError

#: why a GeneralizedFocalLoss in a head is refused, and where it belongs
MISPLACED = (
    'GeneralizedFocalLoss is not a head loss: it turns each sample\'s '
    'likelihood p into a weight W(p) of all its loss terms. Keep the stock '
    'loss in the head (model...loss_cls) and configure it once in '
    "custom_hooks = [dict(type='EquityHook', loss=dict("
    "type='GeneralizedFocalLoss', eta=..., gamma=...))] (or in "
    "train_dataloader.sampler = dict(type='EquityWeightedSampler', "
    'loss=...) for the resampling mode); see docs/equity_training.md.')

# What MMEngine's Runner (from_cfg, wrap_model, train) reads from a config,
# plus runner_type (tools/train.py, tools/test.py).
RUNNER_KEYS = frozenset((
    'model', 'work_dir', 'train_dataloader', 'val_dataloader',
    'test_dataloader', 'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr',
    'optim_wrapper', 'param_scheduler', 'val_evaluator', 'test_evaluator',
    'default_hooks', 'custom_hooks', 'data_preprocessor', 'load_from',
    'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level',
    'visualizer', 'default_scope', 'randomness', 'experiment_name',
    'model_wrapper_cfg', 'sync_bn', 'find_unused_parameters',
    'activation_checkpointing', 'efficient_conv_bn_eval', 'compile',
    'runner_type'))
GFL_TYPES = ('GeneralizedFocalLoss', 'mmdet3d.GeneralizedFocalLoss')
SSB_TYPES = ('SemanticScaleBalancedLoss', 'mmdet3d.SemanticScaleBalancedLoss')
# top-level names earlier configs used for the equity settings
OLD_EQUITY_VARIABLES = dict(equity_eta='eta', equity_gamma='gamma',
                            eta='eta', gamma='gamma',
                            equity_normalisation='normalisation',
                            normalisation='normalisation',
                            likelihood_file='likelihood_file')
SSB_HOOK_OPTIONS = ('warmup_epochs', 'warmup_iters', 'interval', 'capacity',
                    'max_capacity', 'alpha', 'min_count', 'scale_floor',
                    'sampling', 'level', 'point_cloud_range', 'l2_normalize')


def _type_name(cfg) -> str:
    t = cfg.get('type', '') if isinstance(cfg, dict) else ''
    return t if isinstance(t, str) else getattr(t, '__name__', str(t))


def equity_setting_keys(cfg) -> Dict[str, List[str]]:
    """The keys of the DatasetEquity / SSB settings in ``cfg`` (setting
    name -> full keys)."""
    keys: Dict[str, List[str]] = {}
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        name = _type_name(hook).split('.')[-1]
        if name == 'EquityHook':
            for s in ('eta', 'gamma', 'normalisation', 'terms'):
                keys.setdefault(s, []).append(f'custom_hooks.{i}.loss.{s}')
        elif name == 'SemanticScaleBalanceHook':
            for s in SSB_HOOK_OPTIONS:
                keys.setdefault(s, []).append(f'custom_hooks.{i}.{s}')
    loader = cfg.get('train_dataloader') or {}
    sampler = loader.get('sampler') or {}
    if _type_name(sampler).split('.')[-1] == 'EquityWeightedSampler':
        for s in ('eta', 'gamma', 'normalisation'):
            keys.setdefault(s, []).append(f'train_dataloader.sampler.loss.{s}')
    ds, path = loader.get('dataset'), 'train_dataloader.dataset'
    while isinstance(ds, dict):
        if _type_name(ds).split('.')[-1] == 'EquityDataset':
            keys.setdefault('likelihood_file', []).append(
                f'{path}.likelihood_file')
            break
        ds, path = ds.get('dataset'), f'{path}.dataset'
    return keys


def check_runner_options(cfg, options: Optional[dict]) -> None:
    """Refuse ``--cfg-options`` whose top-level key the Runner does not read
    (see module docstring)."""
    for key in options or {}:
        top = key.split('.')[0]
        if top in RUNNER_KEYS:
            continue
        setting = OLD_EQUITY_VARIABLES.get(top) or (
            top if top in SSB_HOOK_OPTIONS else None)
        where = equity_setting_keys(cfg).get(setting) if setting else None
        if top in cfg:
            what = (f'{top!r} is a variable of the config file: MMEngine '
                    'substituted its value where the file uses it when the '
                    'file was parsed, so overriding it would change nothing '
                    'that runs (while the saved config showed the new '
                    'value).')
        else:
            what = (f'{top!r} is neither a key of this config nor a setting '
                    "of MMEngine's Runner: it would be added to the saved "
                    'config and ignored.')
        if where:
            fix = (f'This config sets {setting} once, at '
                   f'{" and ".join(where)}: override that key, e.g. '
                   f'--cfg-options {where[0]}=...')
        elif setting:
            fix = (f'This config has no {setting} setting: DatasetEquity is '
                   "configured by custom_hooks=[dict(type='EquityHook', "
                   "loss=dict(type='GeneralizedFocalLoss', eta=..., "
                   'gamma=...))] and train_dataloader.dataset=dict('
                   "type='EquityDataset', likelihood_file=...), SSB by "
                   "dict(type='SemanticScaleBalanceHook', ...) in "
                   'custom_hooks (docs/equity_training.md).')
        else:
            fix = ('Override the Runner setting that uses it instead (e.g. '
                   'optim_wrapper.optimizer.lr, train_cfg.max_epochs, '
                   'train_dataloader.dataset...).')
        raise ConfigError(
            f'--cfg-options {key}={options[key]}: {what} {fix}')


def check_model_losses(cfg) -> None:
    """Refuse a GeneralizedFocalLoss or SemanticScaleBalancedLoss inside the
    model config, naming the key and where the setting belongs."""
    model = cfg.get('model')

    def walk(node, path):
        if isinstance(node, dict):
            name = _type_name(node)
            if name in GFL_TYPES:
                raise ConfigError(f'{path} is a GeneralizedFocalLoss. '
                                  f'{MISPLACED}')
            if name in SSB_TYPES:
                raise ConfigError(
                    f'{path} is a SemanticScaleBalancedLoss: SSB is not '
                    'configured in the model. Keep the stock loss there and '
                    "configure SSB once, on its hook: custom_hooks = [dict("
                    "type='SemanticScaleBalanceHook', warmup_epochs=5)] (it "
                    'wraps the built loss before training; '
                    'docs/semantic_scale.md).')
            for k, v in node.items():
                walk(v, f'{path}.{k}')
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{path}.{i}')

    walk(model, 'model')
