"""What a benchmark compares: a baseline and method arms over seeds.

An arm is either a **config** (a path, or ``mmdet3d::<path>``) that the
benchmark trains and tests once per seed, with optional ``cfg_options``, or
an **existing results directory** holding one sub-directory per seed,
``<dir>/seed<k>/``, with the metrics JSON of tools/test.py inside (directly,
or in ``test/``, as the benchmark itself writes them).

A spec can be given on the command line (``--baseline``, ``--arm``,
``--seeds``, ...) or as a spec file, an MMEngine config (``.py``) with::

    seeds = [0, 1, 2]
    metric = '3D_AP40_moderate_loose'      # KITTI; nuScenes: 'AP', ...
    env = dict(EQUITY_TINY_KITTI='data/tiny_kitti_study')   # optional
    cfg_options = {}                        # optional, for every config arm
    train_slices = 'data/tiny_kitti_study/frame_modes.json'  # optional
    baseline = dict(name='baseline', config='configs/...py')
    arms = [dict(name='equity', config='configs/..._equity.py',
                 cfg_options={'custom_hooks.0.loss.eta': 0.3}), ...]
    primary = [dict(slice='fog', variant='dense', row='Car'), ...]  # opt.

``env`` is applied before any config is read (configs may substitute
environment variables), and passed to every training and test process.
"""
import copy
import os
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..utils.errors import SpecError  # noqa: F401

_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+-]*$')
SPEC_KEYS = {'seeds', 'metric', 'env', 'cfg_options', 'train_slices',
             'baseline', 'arms', 'primary', 'work_dir', 'confidence',
             'description'}


@dataclass
class Arm:
    """One arm of the benchmark."""
    name: str
    config: Optional[str] = None       # train + test this config, or
    results: Optional[str] = None      # read <results>/seed<k>/
    cfg_options: Dict = field(default_factory=dict)
    description: str = ''

    @property
    def kind(self) -> str:
        return 'config' if self.config is not None else 'results'

    def describe(self) -> Dict:
        return dict(name=self.name, kind=self.kind, config=self.config,
                    results=self.results,
                    cfg_options=dict(self.cfg_options),
                    description=self.description)


@dataclass
class Spec:
    baseline: Arm
    arms: List[Arm]
    seeds: Optional[List[int]] = None
    metric: Optional[str] = None
    env: Dict[str, str] = field(default_factory=dict)
    cfg_options: Dict = field(default_factory=dict)
    train_slices: Optional[str] = None
    primary: List[Dict] = field(default_factory=list)
    work_dir: Optional[str] = None
    confidence: float = 0.95
    description: str = ''
    source: Optional[str] = None

    @property
    def all_arms(self) -> List[Arm]:
        return [self.baseline] + list(self.arms)

    def describe(self) -> Dict:
        return dict(baseline=self.baseline.describe(),
                    arms=[a.describe() for a in self.arms],
                    seeds=self.seeds, metric=self.metric, env=self.env,
                    cfg_options=self.cfg_options,
                    train_slices=self.train_slices, primary=self.primary,
                    confidence=self.confidence,
                    description=self.description, source=self.source)


def make_arm(name: str, target: str, cfg_options: Optional[Dict] = None,
             description: str = '') -> Arm:
    """An arm from ``target``: a directory of per-seed results, or a
    config file (``.py`` or ``mmdet3d::...``)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(
            f'arm name {name!r} is not usable as a folder name; use letters,'
            ' digits and . _ + - (e.g. equity_eta0.3)')
    if not isinstance(target, str) or not target:
        raise SpecError(f'arm {name!r}: give a config file or a results '
                        f'directory, got {target!r}')
    if osp.isdir(target):
        if cfg_options:
            raise SpecError(f'arm {name!r}: cfg_options apply to config '
                            f'arms, but {target!r} is a results directory')
        return Arm(name, results=target, description=description)
    if '::' in target or target.endswith('.py'):
        if '::' not in target and not osp.isfile(target):
            raise SpecError(f'arm {name!r}: config file not found: '
                            f'{target!r}')
        return Arm(name, config=target, cfg_options=dict(cfg_options or {}),
                   description=description)
    raise SpecError(
        f'arm {name!r}: {target!r} is neither a config file (.py, or '
        "mmdet3d::<path>) nor an existing results directory (with seed<k>/ "
        'sub-directories)')


def parse_arm_arg(text: str) -> Arm:
    """``NAME=PATH`` from the command line."""
    if '=' not in text:
        raise SpecError(f'--arm {text!r}: expected NAME=CONFIG_OR_RESULTS_DIR'
                        ', e.g. --arm equity=configs/tiny/'
                        'pointpillars_tiny-kitti-3class_equity.py')
    name, target = text.split('=', 1)
    return make_arm(name.strip(), target.strip())


def _arm_from_dict(d, where: str) -> Arm:
    if not isinstance(d, dict):
        raise SpecError(f'{where}: expected dict(name=..., config=... or '
                        f'results=...), got {d!r}')
    unknown = set(d) - {'name', 'config', 'results', 'cfg_options',
                        'description'}
    if unknown:
        raise SpecError(f'{where}: unknown keys {sorted(unknown)}; an arm '
                        'has name, config or results, cfg_options, '
                        'description')
    if ('config' in d) == ('results' in d):
        raise SpecError(f'{where}: give exactly one of config= (train and '
                        'test it) and results= (a directory of per-seed '
                        'results)')
    target = d.get('config', d.get('results'))
    arm = make_arm(d.get('name'), target, d.get('cfg_options'),
                   d.get('description', ''))
    if 'results' in d and arm.kind != 'results':
        raise SpecError(f'{where}: results={target!r} is not a directory')
    if 'config' in d and arm.kind != 'config':
        raise SpecError(f'{where}: config={target!r} is a directory; use '
                        'results= for existing results')
    return arm


def load_spec_file(path: str) -> Spec:
    """Read a spec file (an MMEngine ``.py`` config, see module doc)."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise SpecError(f'benchmark spec not found: {path!r}')
    raw = Config.fromfile(path, lazy_import=False)
    # env first: configs named in the spec may substitute these variables
    env = {str(k): str(v) for k, v in (raw.get('env') or {}).items()}
    unknown = set(raw.keys()) - SPEC_KEYS
    if unknown:
        raise SpecError(f'{path}: unknown keys {sorted(unknown)}; a spec has '
                        f'{sorted(SPEC_KEYS)}')
    if 'baseline' not in raw:
        raise SpecError(f'{path}: no baseline = dict(name=..., config=...)')
    with applied_env(env):
        baseline = _arm_from_dict(raw.baseline.to_dict() if hasattr(
            raw.baseline, 'to_dict') else raw.baseline, f'{path}: baseline')
        arms = [
            _arm_from_dict(a.to_dict() if hasattr(a, 'to_dict') else a,
                           f'{path}: arms[{i}]')
            for i, a in enumerate(raw.get('arms') or [])
        ]
    spec = Spec(baseline=baseline, arms=arms,
                seeds=list(raw['seeds']) if raw.get('seeds') is not None
                else None,
                metric=raw.get('metric'), env=env,
                cfg_options=dict(raw.get('cfg_options') or {}),
                train_slices=raw.get('train_slices'),
                primary=[dict(p) for p in raw.get('primary') or []],
                work_dir=raw.get('work_dir'),
                confidence=float(raw.get('confidence', 0.95)),
                description=str(raw.get('description', '')), source=path)
    validate_spec(spec)
    return spec


def validate_spec(spec: Spec) -> None:
    """Check the spec as a whole; every problem found is reported together
    in one SpecError (one line each)."""
    problems = []
    if not spec.arms:
        problems.append('no method arms: give at least one --arm NAME=PATH '
                        '(or arms=[...] in the spec file) besides the '
                        'baseline')
    names = [a.name for a in spec.all_arms]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        problems.append(f'arm names must be unique; repeated: {dup}')
    if spec.seeds is not None:
        if not spec.seeds:
            problems.append('seeds is empty; give e.g. --seeds 0 1 2')
        bad = [s for s in spec.seeds
               if isinstance(s, bool) or not isinstance(s, int) or s < 0]
        if bad:
            problems.append(f'seeds must be integers >= 0, got '
                            f'{", ".join(repr(s) for s in bad)}')
        elif len(set(spec.seeds)) != len(spec.seeds):
            problems.append(f'seeds has duplicates: {spec.seeds}')
    elif any(a.kind == 'config' for a in spec.all_arms):
        problems.append('config arms need --seeds (e.g. --seeds 0 1 2): '
                        'each (arm, seed) is one training run')
    if not isinstance(spec.confidence, (int, float)) or \
            not 0 < spec.confidence < 1:
        problems.append(f'confidence must lie in (0, 1), got '
                        f'{spec.confidence}')
    for p in spec.primary:
        unknown = set(p) - {'slice', 'variant', 'row'}
        if unknown or 'row' not in p:
            problems.append(f'primary entries are dict(slice=..., variant='
                            f"..., row=...) with at least row; got {p!r}")
    for opts in [spec.cfg_options] + [a.cfg_options for a in spec.arms]:
        if any(str(k).split('.')[0] == 'randomness' and
               str(k).endswith('seed') for k in opts):
            problems.append('set seeds with --seeds / seeds=[...], not '
                            'cfg_options randomness.seed')
            break
    if len(problems) == 1:
        raise SpecError(problems[0])
    if problems:
        raise SpecError('the benchmark spec has problems:\n - ' +
                        '\n - '.join(problems))


class applied_env:
    """Context manager: set environment variables, restore afterwards."""

    def __init__(self, env: Dict[str, str]):
        self.env = dict(env or {})
        self.saved = {}

    def __enter__(self):
        for k, v in self.env.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = v
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return False


def merged_options(spec: Spec, arm: Arm) -> Dict:
    opts = copy.deepcopy(spec.cfg_options)
    opts.update(copy.deepcopy(arm.cfg_options))
    return opts


def options_as_args(options: Dict) -> List[str]:
    """``--cfg-options`` arguments (``key=value``) for tools/*.py."""
    out = []
    for k, v in options.items():
        if isinstance(v, bool) or v is None:
            v = repr(v)
        elif isinstance(v, (list, tuple, dict)):
            v = repr(v).replace(' ', '')
        out.append(f'{k}={v}')
    return out


def seeds_in_results(arm: Arm) -> Sequence[int]:
    found = []
    for d in os.listdir(arm.results):
        m = re.match(r'^seed(\d+)$', d)
        if m and osp.isdir(osp.join(arm.results, d)):
            found.append(int(m.group(1)))
    return sorted(found)
