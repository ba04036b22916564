"""What EquityHook and SemanticScaleBalanceHook share.

* A run's settings are bound to its checkpoints: :func:`settings_changes`
  compares the settings a checkpoint was trained with to the current ones,
  and :func:`refuse_or_log_changes` refuses a resume that would change them
  silently (a mixed run whose saved config and log show only the new
  values), unless the hook's ``allow_changed_settings=True`` asks for it --
  then the change is logged and kept in the checkpoints' history.
* :func:`resume_history`: the check of a resume and the history of
  changes that EquityHook, SemanticScaleBalanceHook and EquitySamplingHook
  keep in their checkpoints.
* :func:`restart_prefetching_workers`: an iteration-based loop's workers,
  started before a hook claimed the EquityDataset, are restarted.
* :func:`remove_on_failure`: the hooks' torch hooks (and SSB's wrapped loss)
  are removed when ``runner.train()`` raises, not only after a normal end.
* :func:`misplaced_keys`: a ``--cfg-options custom_hooks.N.<key>`` that
  reached the other hook (N counts the config's ``custom_hooks`` list) is
  named with the index it was meant for.
"""
import json
import logging
from typing import Dict, List, Mapping, Optional, Tuple

from mmengine.logging import print_log
from mmengine.runner import BaseLoop

from mmdet3d_equity.utils.errors import ConfigError


def _type_name(t) -> str:
    name = t if isinstance(t, str) else getattr(t, '__name__', str(t))
    return name.rsplit('.', 1)[-1]


def hook_indices(runner, type_name: str) -> List[int]:
    """Positions of the hooks of ``type_name`` in the config's
    custom_hooks (what ``--cfg-options custom_hooks.N`` counts)."""
    cfg = getattr(runner, 'cfg', None) or {}
    hooks = cfg.get('custom_hooks', None) or []
    return [i for i, h in enumerate(hooks)
            if isinstance(h, Mapping) and _type_name(h.get('type')) ==
            type_name]


def _dotted(value, prefix: str) -> List[Tuple[str, object]]:
    if isinstance(value, Mapping) and value:
        return [kv for k, v in value.items()
                for kv in _dotted(v, f'{prefix}.{k}')]
    return [(prefix, value)]


def misplaced_keys(runner, hook: str, keys: Mapping, owner: str
                   ) -> ConfigError:
    """The error for ``keys`` (name -> value) of ``owner`` given to
    ``hook``, naming the custom_hooks index each belongs to."""
    mine, theirs = hook_indices(runner, hook), hook_indices(runner, owner)
    opts = [kv for k, v in keys.items() for kv in _dotted(v, k)]
    here = f'custom_hooks.{mine[0]}' if mine else 'custom_hooks.N'
    given = ', '.join(f'{here}.{k}' for k, _ in opts)
    if theirs:
        fix = ('; the ' + owner + f' is custom_hooks.{theirs[0]}: write ' +
               ', '.join(f'custom_hooks.{theirs[0]}.{k}={v!r}'
                         for k, v in opts))
    else:
        fix = f'; this config has no {owner} in custom_hooks: add one'
    return ConfigError(
        f'{given} reached the {hook} ({here}), which has no '
        f'{sorted(keys)}: {sorted(keys)} belong to the {owner} (N in '
        f'custom_hooks.N counts the config\'s custom_hooks list from 0){fix}')


def remove_on_failure(runner, cleanup) -> None:
    """Call ``cleanup()`` when the train loop about to run raises (called
    in ``before_run``: the loop is built, its ``run`` not started)."""
    loop = getattr(runner, '_train_loop', None)
    if not isinstance(loop, BaseLoop):
        return  # testing or validating only: no train loop is built
    run = loop.run

    def guarded():
        try:
            return run()
        except BaseException:
            cleanup()
            raise
        finally:
            if loop.__dict__.get('run') is guarded:
                del loop.run

    loop.run = guarded


def plain(settings: Mapping) -> dict:
    """``settings`` as JSON values (tuples as lists), for comparing."""
    return json.loads(json.dumps(dict(settings), default=str))


def settings_changes(saved: Optional[Mapping], current: Mapping
                     ) -> Dict[str, Tuple]:
    """{key: (saved value, current value)} of the settings that differ."""
    saved, current = plain(saved or {}), plain(current)
    return {k: (saved.get(k), current.get(k))
            for k in sorted(set(saved) | set(current))
            if saved.get(k) != current.get(k)}


def refuse_or_log_changes(runner, hook: str, changes: Mapping,
                          allow: bool) -> None:
    """Refuse a resume that changes the settings, unless ``allow``."""
    if not changes:
        return
    text = '; '.join(f'{k}: {a!r} in the checkpoint, {b!r} now'
                     for k, (a, b) in changes.items())
    idx = hook_indices(runner, hook)
    option = f'custom_hooks.{idx[0] if idx else "N"}.allow_changed_settings'
    if not allow:
        raise ConfigError(
            f'{hook}: the resumed checkpoint was trained with other settings '
            f'({text}); resuming would continue a mixed run whose saved '
            'config and log show only the new values. Resume with the '
            'settings it was trained with, start a new run (without '
            f'--resume), or pass --cfg-options {option}=True to continue '
            'with the new settings (logged, and recorded in the '
            'checkpoints).')
    print_log(f'{hook}: resuming with changed settings ({text}) because '
              f'{option}=True; the change is recorded in the checkpoints '
              '(history).', 'current', logging.WARNING)


def resume_history(runner, hook: str, state: Mapping, current: Mapping,
                   allow: bool, it: int) -> list:
    """The history of setting changes a resumed run continues with.

    ``state`` is the hook's entry of the checkpoint (``settings`` and
    ``history``; empty when the checkpoint was trained without the hook),
    ``current`` the settings now. A change is refused unless ``allow``
    (:func:`refuse_or_log_changes`); an allowed one is appended to the
    history at iteration ``it``."""
    saved = state.get('settings')
    changes = settings_changes(saved, current) if saved else \
        {hook: ('absent', 'present')}
    refuse_or_log_changes(runner, hook, changes, allow)
    history = list(state.get('history', []))
    if changes:
        history.append(dict(iter=int(it), changes=changes))
    return history


def restart_prefetching_workers(runner) -> None:
    """An IterBasedTrainLoop starts its dataloader workers when it is
    built, before before_train claims the EquityDataset: their copies of the
    wrapper are unclaimed. Restart them once (the InfiniteSampler starts its
    sequence again, so the batches are those of an undisturbed start)."""
    loop = runner.train_loop
    it = getattr(loop, 'dataloader_iterator', None)
    loader = getattr(loop, 'dataloader', None)
    if it is None or not getattr(loader, 'num_workers', 0):
        return
    loader._iterator = None  # persistent workers keep their old copies
    loop.dataloader_iterator = type(it)(loader)
    print_log('restarted the dataloader workers that the iteration-based '
              'loop started before the EquityDataset was claimed', 'current')
