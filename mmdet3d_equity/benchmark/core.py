"""The benchmark: preflight, runs, analysis (see docs/benchmark.md).

:func:`run_benchmark` is what ``tools/compare_arms.py`` calls:

1. **preflight** (before any training): every config arm's config loads
   with its options, its train dataset builds (an EquityDataset validates
   its likelihood file there), its sampler, model, custom hooks, test
   dataset and test evaluator build; existing runs in the work dir were
   made with the same definitions; results arms have every seed; the output
   directory is writable; the metric (``--metric``) names an AP of every
   arm's test evaluator. All problems of all arms are reported together.
2. **runs**: each (arm, seed) without a finished run is trained and tested
   (see :mod:`.runs`); finished runs are reused.
3. **analysis**: per metric view (slice x AP variant) and row (class or
   summary), the spread over seeds of every arm and the paired difference
   of every method arm to the baseline with a confidence interval and a
   verdict (see :mod:`.stats`); training cost and sample-weight diagnostics.
4. **report**: Markdown, CSV, JSON and plots (see :mod:`.report`).
"""
import copy
import traceback
from collections import OrderedDict
from typing import Dict, List

from ..evaluation.results import (
    ResultsError,
    load_metrics,
    metric_views,
    resolve_kind,
)
from ..utils.config_checks import check_machine, config_build_error
from ..utils.errors import ConfigError, EquityError
from ..utils.fileio import check_output_dir
from .diagnostics import seconds_per_iter, weight_diagnostics
from .runs import Run, execute, job_env, plan_runs, run_inputs
from .spec import Arm, Spec, SpecError, applied_env, merged_options
from .stats import paired_difference, spread


def _log(msg: str) -> None:
    print(f'[benchmark] {msg}', flush=True)


def load_arm_config(spec: Spec, arm: Arm):
    from ..utils.config import ConfigError, load_config
    try:
        # runner_options: the check tools/train.py makes, made up front
        return load_config(arm.config, merged_options(spec, arm),
                           runner_options=True)
    except ConfigError as e:
        raise SpecError(f'arm {arm.name!r}: {e}') from e


def check_config_arm(spec: Spec, arm: Arm):
    """Build what training and testing ``arm`` would build, without
    training: raises with the arm's name and the problem. Returns the
    arm's loaded config."""
    from mmdet3d.registry import (
        DATA_SAMPLERS,
        DATASETS,
        HOOKS,
        METRICS,
        MODELS,
    )
    from mmengine.registry import DefaultScope, init_default_scope
    from mmengine.utils import import_modules_from_strings
    cfg = load_arm_config(spec, arm)
    step = 'importing custom_imports'
    try:
        if cfg.get('custom_imports'):
            import_modules_from_strings(**cfg.custom_imports)
        scope = cfg.get('default_scope', 'mmdet3d')
        if DefaultScope.get_current_instance() is None:
            init_default_scope(scope)
        step = 'building the train dataset'
        train_ds = DATASETS.build(copy.deepcopy(
            cfg.train_dataloader.dataset))
        sampler = cfg.train_dataloader.get('sampler')
        if sampler is not None:
            step = 'building the train sampler'
            sampler = copy.deepcopy(sampler)
            sampler.setdefault('dataset', train_ds)
            DATA_SAMPLERS.build(sampler)
        step = 'building the model'
        MODELS.build(copy.deepcopy(cfg.model))
        for i, h in enumerate(cfg.get('custom_hooks') or []):
            step = f'building custom_hooks[{i}] ({h.get("type")})'
            HOOKS.build(copy.deepcopy(h))
        step = 'building the test dataset'
        DATASETS.build(copy.deepcopy(cfg.test_dataloader.dataset))
        evaluators = cfg.test_evaluator
        if not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        for e in evaluators:
            step = f'building the test evaluator ({e.get("type")})'
            METRICS.build(copy.deepcopy(e))
    except Exception as e:  # report which arm and step, then the cause
        cause = config_build_error(e, cfg) or e
        what = ('' if cause is not e or isinstance(e, EquityError) else
                f'{type(e).__name__}: ')
        raise SpecError(
            f'arm {arm.name!r} ({arm.config}): {step} failed: '
            f'{what}{cause}') from e
    from ..evaluation.kitti_cpu_iou import numba_cuda_available
    try:  # what tools/train.py and tools/test.py will check of this machine
        check_machine(cfg, True, numba_cuda_available)
        check_machine(cfg, False, numba_cuda_available)
    except ConfigError as e:
        raise SpecError(f'arm {arm.name!r} ({arm.config}): {e}') from e
    check_metric_name(spec, arm, cfg)
    return cfg


#: what kind of metrics a test evaluator type writes
_METRIC_KINDS = dict(KittiMetric='kitti', KittiCPUMetric='kitti',
                     NuScenesMetric='nuscenes')
#: one key of each kind, to check a metric name against that kind
_SAMPLE_KEYS = dict(
    kitti='Kitti metric/pred_instances_3d/KITTI/Car_3D_AP40_moderate_strict',
    nuscenes='NuScenes metric/pred_instances_3d_NuScenes/car_AP_dist_2.0')


def evaluator_kinds(cfg) -> set:
    """The metric kinds ('kitti', 'nuscenes') the test evaluator writes
    (SliceMetric: its wrapped metric's)."""
    evs = cfg.get('test_evaluator')
    evs = list(evs) if isinstance(evs, (list, tuple)) else [evs]
    kinds = set()
    while evs:
        e = evs.pop()
        if not isinstance(e, dict):
            continue
        name = str(e.get('type', '')).split('.')[-1]
        if name in _METRIC_KINDS:
            kinds.add(_METRIC_KINDS[name])
        elif isinstance(e.get('metric'), dict):
            evs.append(e['metric'])
    return kinds


def check_metric_name(spec: Spec, arm: Arm, cfg) -> None:
    """``spec.metric`` names an AP of what the arm's test evaluator writes
    (checked before training: a misspelt metric would fail only after every
    run)."""
    if not spec.metric:
        return
    for kind in sorted(evaluator_kinds(cfg)):
        try:
            resolve_kind(f'arm {arm.name}', {_SAMPLE_KEYS[kind]: 0.0},
                         spec.metric, kind)
        except ResultsError as e:
            raise SpecError(f'arm {arm.name!r} ({arm.config}): {e}') from e


def check_results_arm(spec: Spec, arm: Arm) -> None:
    """The metric is in the first available seed's results of ``arm``."""
    for seed in spec.seeds or []:
        run = Run(spec, arm, seed, '')
        try:
            path, metrics = load_metrics(run.metrics_file())
        except SpecError:
            continue  # a missing seed is reported by plan_runs
        except ResultsError as e:
            raise SpecError(f'arm {arm.name!r}: {e}') from e
        try:
            metric_views(path, metrics, spec.metric)
        except ResultsError as e:
            raise SpecError(f'arm {arm.name!r}: {e}') from e
        return


def preflight(spec: Spec, work_dir: str, out_dir: str,
              rerun: bool = False) -> List[Run]:
    """Everything that can be checked before training; returns the runs."""
    problems = []
    for where, what in ((work_dir, 'work'), (out_dir, 'output')):
        try:
            check_output_dir(where, what)
        except OSError as e:
            problems.append(str(e))
    runs, inputs = [], {}
    with applied_env(spec.env):
        for arm in spec.all_arms:
            try:
                if arm.kind != 'config':
                    check_results_arm(spec, arm)
                    continue
                _log(f'preflight: arm {arm.name} ({arm.config})')
                cfg = check_config_arm(spec, arm)
                inputs[arm.name] = run_inputs(cfg, arm.config)
            except SpecError as e:
                problems.append(str(e))
        runs, found = plan_runs(spec, work_dir, rerun, inputs)
        problems.extend(found)
    if problems:
        raise SpecError('preflight found problems; nothing was trained:\n - '
                        + '\n - '.join(problems))
    _log(f'preflight passed: {len(spec.all_arms)} arms x '
         f'{len(spec.seeds)} seeds')
    return runs


# --------------------------------------------------------------------------
# analysis
# --------------------------------------------------------------------------
def collect(spec: Spec, runs: List[Run]) -> Dict:
    """results[arm][seed] = metric views of that run's metrics JSON."""
    out = OrderedDict((a.name, OrderedDict()) for a in spec.all_arms)
    kind = metric = None
    for run in runs:
        path, metrics = load_metrics(run.metrics_file())
        views = metric_views(path, metrics, spec.metric or metric, kind)
        kind, metric = views['kind'], views['metric']
        out[run.arm.name][run.seed] = dict(views, path=path)
    return dict(kind=kind, metric=metric, results=out)


def analyse(spec: Spec, collected: Dict) -> Dict:
    """Rows of (view, row) with per-arm spread and paired differences."""
    results = collected['results']
    base = spec.baseline.name
    # the rows come from the baseline's views, in their order
    order = OrderedDict()
    for seed, res in results[base].items():
        for view, v in res['views'].items():
            for kind in ('classes', 'summary'):
                for row in v[kind]:
                    order.setdefault((view, row), kind)
    rows = []
    for (view, row), kind in order.items():
        per_arm = OrderedDict()
        for arm in spec.all_arms:
            vals = {}
            for seed, res in results[arm.name].items():
                v = res['views'].get(view)
                if v is not None and row in v[kind]:
                    vals[seed] = v[kind][row]
            per_arm[arm.name] = vals
        first = next(iter(results[base].values()))['views'].get(view, {})
        entry = OrderedDict(
            slice=view[0], variant=view[1], row=row, kind=kind,
            count=(first.get('counts') or {}).get(row),
            few=row in (first.get('few') or []),
            values={a: {str(s): x for s, x in v.items()}
                    for a, v in per_arm.items()},
            spread={a: spread(v) for a, v in per_arm.items()},
            diff={a.name: paired_difference(
                per_arm[base], per_arm[a.name], spec.confidence,
                (first.get('counts') or {}).get(row))
                  for a in spec.arms})
        rows.append(entry)
    return rows


def slice_counts(spec: Spec, collected: Dict) -> Dict:
    """{slice: {num_samples, <class>: ground-truth count}} of the evaluated
    split (the baseline's first run; the same for every run)."""
    first = next(iter(collected['results'][spec.baseline.name].values()))
    out = OrderedDict()
    for (sl, variant), v in first['views'].items():
        if variant != 'stock':
            continue
        c = OrderedDict()
        if 'num_samples' in v:
            c['num_samples'] = v['num_samples']
        c.update(v.get('counts') or {})
        if c:
            out[sl] = c
    return out


def cost(spec: Spec, runs: List[Run]) -> Dict:
    """Seconds per iteration per arm and seed, and the paired ratio to the
    baseline (config arms trained by the benchmark only)."""
    per = OrderedDict((a.name, {}) for a in spec.all_arms)
    for run in runs:
        if run.arm.kind != 'config':
            continue
        s = seconds_per_iter(run.train_dir)
        if s is not None:
            per[run.arm.name][run.seed] = s['median']
    base = per[spec.baseline.name]
    out = OrderedDict()
    for arm, vals in per.items():
        ratios = {s: v / base[s] for s, v in vals.items() if s in base}
        out[arm] = dict(seconds_per_iter=spread(vals),
                        ratio_to_baseline=spread(ratios) if ratios else
                        dict(n=0, mean=None, std=None))
    return out


def weights(spec: Spec) -> Dict:
    out = OrderedDict()
    with applied_env(spec.env):
        for arm in spec.all_arms:
            if arm.kind != 'config':
                continue
            cfg = load_arm_config(spec, arm)
            try:
                out[arm.name] = weight_diagnostics(cfg, spec.train_slices)
            except Exception as e:  # a diagnostic, not the result
                out[arm.name] = dict(error=f'{type(e).__name__}: {e}')
                _log(f'weight diagnostics of {arm.name} failed: '
                     + traceback.format_exception_only(type(e), e)[-1])
    return out


def run_benchmark(spec: Spec, work_dir: str, out_dir: str, jobs: int = 1,
                  rerun: bool = False, overwrite: bool = False,
                  plots: bool = True) -> Dict:
    """Preflight, train/test what is missing, analyse, write the report."""
    from .report import check_report_free, write_report
    if spec.seeds is None:
        # results-only benchmark: the seeds every arm has
        from .spec import seeds_in_results
        common = None
        for arm in spec.all_arms:
            s = set(seeds_in_results(arm))
            common = s if common is None else common & s
        if not common:
            raise SpecError('the results directories share no seed<k>/ '
                            'sub-directory; give --seeds')
        spec.seeds = sorted(common)
    check_report_free(out_dir, overwrite)
    runs = preflight(spec, work_dir, out_dir, rerun)
    execute(runs, job_env(spec, jobs), jobs, rerun)
    collected = collect(spec, runs)
    analysis = OrderedDict(
        spec=spec.describe(), work_dir=work_dir, kind=collected['kind'],
        counts=slice_counts(spec, collected),
        metric=collected['metric'], seeds=spec.seeds,
        runs={r.name: r.metrics_file() for r in runs},
        run_seconds={r.name: (r.record() or {}).get('seconds')
                     for r in runs if r.arm.kind == 'config'},
        rows=analyse(spec, collected), cost=cost(spec, runs),
        weights=weights(spec))
    files = write_report(analysis, out_dir, overwrite, plots=plots)
    analysis['files'] = files
    return analysis
