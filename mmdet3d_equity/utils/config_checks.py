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
* :func:`check_overrides_take_effect`: an override that the component
  would ignore because another of its settings wins (an SSB hook's
  ``warmup_epochs`` while its config sets ``warmup_iters``) is refused.
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
SSB_HOOK_OPTIONS = ('warmup_epochs', 'warmup_iters', 'interval', 'capacity',
                    'max_capacity', 'alpha', 'min_count', 'scale_floor',
                    'sampling', 'level', 'point_cloud_range', 'l2_normalize')
#: the setting names a user may give at top level (``--cfg-options
#: eta=0.3``): refused like any other non-Runner key, naming the key that
#: sets it in this config
SETTING_NAMES = ('eta', 'gamma', 'normalisation', 'terms',
                 'likelihood_file') + SSB_HOOK_OPTIONS


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


def _keys_holding(cfg, value) -> List[str]:
    """The full keys of the Runner settings in ``cfg`` whose value is
    ``value`` (a string value also where it starts a longer string, as a
    ``data_root`` starts the paths built from it): where a config-file
    variable's value went when the file was parsed."""
    if value is None or isinstance(value, bool) or value == '':
        return []
    found: List[str] = []

    def walk(node, path):
        if _same(node, value):
            found.append(path)
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f'{path}.{k}')
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{path}.{i}')

    for top in cfg:
        if top in RUNNER_KEYS:
            walk(cfg[top], top)
    return found


def _same(node, value) -> bool:
    if isinstance(node, bool) or isinstance(value, bool):
        return False
    if isinstance(value, str):
        return isinstance(node, str) and (
            node == value or (len(value) > 2 and node.startswith(value)))
    if isinstance(value, (int, float)):
        return isinstance(node, (int, float)) and node == value
    try:
        return type(node) is type(value) and node == value
    except Exception:  # noqa: BLE001  (an uncomparable value: no match)
        return False


def check_runner_options(cfg, options: Optional[dict]) -> None:
    """Refuse ``--cfg-options`` whose top-level key the Runner does not read
    (see module docstring)."""
    for key in options or {}:
        top = key.split('.')[0]
        if top in RUNNER_KEYS:
            continue
        setting = top if top in SETTING_NAMES else None
        where = equity_setting_keys(cfg).get(setting) if setting else None
        users = _keys_holding(cfg, cfg[top]) if top in cfg else []
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
        elif users:
            more = (f' (and {len(users) - 4} more)' if len(users) > 4
                    else '')
            fix = (f'Override the Runner keys that hold its value instead: '
                   f'{", ".join(users[:4])}{more}, e.g. --cfg-options '
                   f'{users[0]}=...')
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


#: pairs of hook options where the first, when set, takes precedence over
#: the second (so overriding the second changes nothing)
PRECEDENCE = {'SemanticScaleBalanceHook': (('warmup_iters',
                                             'warmup_epochs'), )}


def check_overrides_take_effect(cfg, options: Optional[dict]) -> None:
    """After ``options`` were merged into ``cfg``: refuse an override that
    the built component would ignore because another of its settings takes
    precedence (``custom_hooks.N.warmup_epochs=5`` on an SSB hook whose
    config sets ``warmup_iters``), naming the key that wins and the fix."""
    hooks = cfg.get('custom_hooks') or []
    for key in options or {}:
        parts = str(key).split('.')
        if len(parts) != 3 or parts[0] != 'custom_hooks' or \
                not parts[1].isdigit() or int(parts[1]) >= len(hooks):
            continue
        hook = hooks[int(parts[1])]
        name = _type_name(hook).split('.')[-1]
        for wins, loses in PRECEDENCE.get(name, ()):
            if parts[2] == loses and options[key] is not None and \
                    hook.get(wins) is not None:
                raise ConfigError(
                    f'--cfg-options {key}={options[key]}: custom_hooks.'
                    f'{parts[1]} ({name}) sets {wins}={hook.get(wins)!r}, '
                    f'which takes precedence over {loses}, so this override '
                    f'would change nothing that runs. To use {loses}, also '
                    f'pass --cfg-options custom_hooks.{parts[1]}.{wins}=None;'
                    f' to change the run as configured, override '
                    f'custom_hooks.{parts[1]}.{wins}.')


def _build_frame(tb):
    """The innermost traceback frame, when it is mmengine's
    ``build_from_cfg`` itself (not code it called): the error was raised
    by building a config dict, before any code of the built class ran."""
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is None:
        return None
    code = last.tb_frame.f_code
    if code.co_name != 'build_from_cfg' or not code.co_filename.replace(
            '\\', '/').endswith('mmengine/registry/build_functions.py'):
        return None
    return last.tb_frame


def _find_dicts(cfg, type_name: str, key: Optional[str]) -> List[str]:
    """Full keys of the dicts in ``cfg`` of type ``type_name`` (holding
    ``key``, when given)."""
    found: List[str] = []

    def walk(node, path):
        if isinstance(node, dict):
            if _type_name(node).split('.')[-1] == type_name and (
                    key is None or key in node):
                found.append(path)
            for k, v in node.items():
                walk(v, f'{path}.{k}' if path else str(k))
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{path}.{i}')

    if hasattr(cfg, 'to_dict'):  # an mmengine Config
        cfg = cfg.to_dict()
    walk(cfg if isinstance(cfg, dict) else {}, '')
    return found


def config_build_error(error: BaseException, cfg=None
                       ) -> Optional[ConfigError]:
    """A :class:`ConfigError` naming the config key and the fix for an
    error that building a config dict raised before any code of the built
    class ran (a misspelt or missing argument, an unregistered type);
    None for any other error (a bug keeps its traceback)."""
    import inspect
    import re
    frame = _build_frame(error.__traceback__)
    if frame is None:
        return None
    obj_cls = frame.f_locals.get('obj_cls')
    name = getattr(obj_cls, '__name__', None)
    registry = frame.f_locals.get('registry')
    if isinstance(error, KeyError) and obj_cls is None:
        obj_type = frame.f_locals.get('obj_type')
        where = _find_dicts(cfg, str(obj_type).split('.')[-1], None) \
            if cfg is not None else []
        at = f' ({", ".join(where[:3])})' if where else ''
        scope = getattr(registry, 'scope', '?')
        return ConfigError(
            f"type={obj_type!r}{at} is not registered in the "
            f"{scope}::{getattr(registry, 'name', '?')} registry: check "
            'its spelling, or import the module that registers it '
            "(custom_imports = dict(imports=['mmdet3d_equity'], "
            'allow_failed_imports=False) for this plugin)')
    if not isinstance(error, TypeError) or name is None:
        return None
    msg = str(error)
    m = re.search(r"unexpected keyword argument '(\w+)'", msg)
    bad = m.group(1) if m else None
    where = _find_dicts(cfg, name, bad) if cfg is not None else []
    try:
        params = [p for p in inspect.signature(obj_cls).parameters.values()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        takes = f'; it takes {", ".join(p.name for p in params)}'
    except (TypeError, ValueError):
        takes = ''
    at = f'{where[0]}' if where else f'a {name} config'
    if bad is not None:
        return ConfigError(
            f'{at}.{bad}: {name} has no argument {bad!r}{takes}; correct '
            'or remove the key (in the config file or --cfg-options)')
    return ConfigError(f'{at}: {name} cannot be built from its config: '
                       f'{msg}{takes}')


def accelerator() -> Optional[str]:
    """The accelerator AMP and KittiMetric's kernels could use, if any."""
    import torch
    if torch.cuda.is_available():
        return 'cuda'
    from mmengine.device import (
        is_mlu_available,
        is_musa_available,
        is_npu_available,
    )
    for name, available in (('npu', is_npu_available),
                            ('mlu', is_mlu_available),
                            ('musa', is_musa_available)):
        if available():
            return name
    return None


def _evaluators(cfg, which):
    """(key, metric config) of the ``which`` evaluator, SliceMetric's
    wrapped metric included."""
    ev = cfg.get(which)
    if ev is None:
        return []
    if isinstance(ev, dict) and 'metrics' in ev and 'type' not in ev:
        ms = ev['metrics']
        ms = list(ms) if isinstance(ms, (list, tuple)) else [ms]
        items = [(f'{which}.metrics.{i}', m) for i, m in enumerate(ms)]
    elif isinstance(ev, (list, tuple)):
        items = [(f'{which}.{i}', m) for i, m in enumerate(ev)]
    else:
        items = [(which, ev)]
    out = []
    for key, m in items:
        if not isinstance(m, dict):
            continue
        out.append((key, m))
        if str(m.get('type', '')).split('.')[-1] == 'SliceMetric' and \
                isinstance(m.get('metric'), dict):
            out.append((f'{key}.metric', m['metric']))
    return out


def check_machine(cfg, train: bool, numba_cuda_available) -> None:
    """Before the Runner is built: what the config needs of this machine.

    * AMP (``AmpOptimWrapper``, ``--amp``) needs a GPU (MMEngine asserts it
      deep inside the optimizer wrapper's constructor);
    * mmdet3d's KittiMetric computes its rotated IoU with numba CUDA kernels
      and fails only when it first evaluates (after a whole training epoch)
      on a machine without CUDA: refused up front, naming KittiCPUMetric
      (same arguments and values). ``numba_cuda_available``: a callable
      saying whether numba can run CUDA kernels here (the evaluation
      package's check; called only for such a metric).
    """
    if train:
        wrapper = str((cfg.get('optim_wrapper') or {}).get(
            'type', 'OptimWrapper')).split('.')[-1]
        if wrapper == 'AmpOptimWrapper' and accelerator() is None:
            raise ConfigError(
                'AMP (--amp, optim_wrapper.type=AmpOptimWrapper) needs a GPU '
                '(CUDA, NPU, MLU or MUSA) and this machine has none: drop '
                "--amp, or set optim_wrapper.type='OptimWrapper'")
    which = []
    if train and cfg.get('val_dataloader') is not None and \
            cfg.get('val_cfg') is not None:
        which.append('val_evaluator')
    if not train:
        which.append('test_evaluator')
    for w in which:
        for key, metric in _evaluators(cfg, w):
            if str(metric.get('type', '')).split('.')[-1] != 'KittiMetric':
                continue
            if numba_cuda_available():
                return
            raise ConfigError(
                f"{key} is mmdet3d's KittiMetric, which computes its "
                'rotated IoU with numba CUDA kernels, and this machine has '
                'no CUDA: it would fail when it first evaluates (after '
                f"training an epoch). Use {key}.type='KittiCPUMetric' (the "
                'same arguments and values; registered by mmdet3d_equity, '
                "custom_imports=dict(imports=['mmdet3d_equity'])), e.g. "
                f'--cfg-options {key}.type=KittiCPUMetric')
