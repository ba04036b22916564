"""Training and testing the (arm, seed) runs of a benchmark.

Layout under the benchmark's work dir::

    <work_dir>/<arm>/seed<k>/run.json   definition + status + timings
                            /train/      tools/train.py --work-dir
                            /test/       tools/test.py --work-dir
                            /log.txt     both tools' output

A run is *finished* when run.json says so and its metrics JSON exists;
finished runs are reused, so an interrupted benchmark resumes where it
stopped (a run whose training finished is only tested; an unfinished
training restarts with ``--resume``, from its last checkpoint if any). A
finished run made with another definition (config content, options, seed,
environment) is refused rather than silently mixed in.

Jobs run as subprocesses, ``jobs`` at a time; each gets
``OMP_NUM_THREADS = cores // jobs`` (unless the caller set it), because
two trainings with torch's default threads on 2 cores slow each other down
about 12x.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional

from ..utils.fileio import atomic_write_json
from ..evaluation.results import ResultsError, find_metrics_json
from .spec import Arm, Spec, SpecError, merged_options, options_as_args
from ..utils.errors import RunError  # noqa: F401

#: the installed tools the runs start (``python -m ...``): no checkout needed
TRAIN_TOOL = 'mmdet3d_equity.cli.train'
TEST_TOOL = 'mmdet3d_equity.cli.test'


def _log(msg: str) -> None:
    print(f'[benchmark] {msg}', flush=True)


def config_files(config: str) -> List[str]:
    """The config file and every file of its ``_base_`` chain (depth first,
    each once), resolved the way mmengine's Config.fromfile resolves them,
    ``mmdet3d::`` bases included."""
    from mmengine.config import Config

    # Config._get_base_files/_get_cfg_path are mmengine 0.10's own base
    # resolution (static helpers of Config.fromfile); using them keeps the
    # chain identical to what fromfile merges.
    if '::' in config:
        config = Config._get_cfg_path(config, '')[0]
    out, todo = [], [osp.abspath(config)]
    while todo:
        path = todo.pop(0)
        if path in out:
            continue
        out.append(path)
        todo.extend(osp.abspath(Config._get_cfg_path(b, path)[0])
                    for b in Config._get_base_files(path))
    return out


def config_digest(config: str) -> str:
    """sha256 over the text of the config and of every file of its
    ``_base_`` chain, so an edit to a base config changes the definition of
    every run that inherits it."""
    h = hashlib.sha256()
    for path in config_files(config):
        with open(path, 'rb') as f:
            data = f.read()
        h.update(osp.basename(path).encode() + b'\0')
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


class Run:
    """One (arm, seed) of a config arm, or of a results arm."""

    def __init__(self, spec: Spec, arm: Arm, seed: int, work_dir: str):
        self.spec, self.arm, self.seed = spec, arm, seed
        if arm.kind == 'results':
            self.dir = osp.abspath(osp.join(arm.results, f'seed{seed}'))
        else:
            self.dir = osp.abspath(osp.join(work_dir, arm.name,
                                            f'seed{seed}'))
        self.train_dir = osp.join(self.dir, 'train')
        self.test_dir = osp.join(self.dir, 'test')
        self.record_path = osp.join(self.dir, 'run.json')
        self.log_path = osp.join(self.dir, 'log.txt')

    @property
    def name(self) -> str:
        return f'{self.arm.name}/seed{self.seed}'

    # -- definition and status --------------------------------------------
    def definition(self) -> Dict:
        return dict(arm=self.arm.name, config=self.arm.config,
                    config_digest=config_digest(self.arm.config),
                    cfg_options=merged_options(self.spec, self.arm),
                    seed=self.seed, env=dict(self.spec.env))

    def record(self) -> Optional[Dict]:
        if not osp.isfile(self.record_path):
            return None
        with open(self.record_path) as f:
            return json.load(f)

    def status(self) -> str:
        """'done', 'trained' or 'todo' (results arms: 'done' or 'missing')."""
        if self.arm.kind == 'results':
            try:
                self.metrics_file()
                return 'done'
            except SpecError:
                return 'missing'
        rec = self.record()
        if rec is None:
            return 'todo'
        if rec.get('definition') != self.definition():
            raise SpecError(
                f'{self.name}: {self.dir} holds a run made with another '
                f'definition ({_diff(rec.get("definition"), self.definition())}'  # noqa: E501
                '); pass --rerun to replace it, or use another --work-dir')
        return rec.get('status', 'todo')

    def metrics_file(self) -> str:
        for where in (self.test_dir, self.dir):
            if osp.isdir(where):
                try:
                    return find_metrics_json(where)
                except ResultsError:
                    continue
        raise SpecError(f'{self.name}: no metrics JSON of tools/test.py in '
                        f'{self.dir} (or its test/)')

    def checkpoint(self) -> str:
        marker = osp.join(self.train_dir, 'last_checkpoint')
        if not osp.isfile(marker):
            raise RunError(f'{self.name}: tools/train.py wrote no checkpoint '
                           f'({marker} missing; see {self.log_path})')
        with open(marker) as f:
            ckpt = f.read().strip()
        # runs start in the benchmark's working directory (configs' relative
        # data roots mean the same to every run)
        ckpt = osp.abspath(ckpt)
        if not osp.isfile(ckpt):
            raise RunError(f'{self.name}: checkpoint {ckpt!r} named in '
                           f'{marker} does not exist')
        return ckpt

    def _write(self, status: str, **extra) -> None:
        rec = self.record() or {}
        rec.update(definition=self.definition(), status=status, **extra)
        atomic_write_json(self.record_path, rec)

    # -- commands ---------------------------------------------------------
    def commands(self, step: str) -> List[str]:
        opts = options_as_args(merged_options(self.spec, self.arm))
        opts.append(f'randomness.seed={self.seed}')
        py = sys.executable
        if step == 'train':
            return [py, '-m', TRAIN_TOOL, osp.abspath(self.arm.config),
                    '--work-dir', self.train_dir, '--resume',
                    '--cfg-options'] + opts
        return [py, '-m', TEST_TOOL, osp.abspath(self.arm.config),
                self.checkpoint(), '--work-dir', self.test_dir,
                '--cfg-options'] + opts


def _diff(old, new) -> str:
    if not isinstance(old, dict):
        return 'no definition recorded'
    changed = [k for k in sorted(set(old) | set(new))
               if old.get(k) != new.get(k)]
    return 'differs in ' + ', '.join(changed)


class _Job:
    """A run's remaining steps as subprocesses."""

    def __init__(self, run: Run, env: Dict[str, str]):
        self.run = run
        self.env = env
        # a run that was being trained when the benchmark stopped is trained
        # again (tools/train.py --resume continues from its last checkpoint)
        self.steps = (['test'] if run.status() == 'trained' else
                      ['train', 'test'])
        self.proc = None
        self.log = None
        self.t0 = None
        self.times = {}

    def start_next(self) -> None:
        step = self.steps[0]
        os.makedirs(self.run.dir, exist_ok=True)
        if self.log is None:
            self.log = open(self.run.log_path, 'a')
        cmd = self.run.commands(step)
        self.log.write(f'$ {" ".join(cmd)}\n')
        self.log.flush()
        if step == 'train':
            self.run._write('training', started=time.time())
        self.t0 = time.time()
        self.proc = subprocess.Popen(cmd, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env)

    def poll(self) -> Optional[bool]:
        """None: running; True: all steps done; False: next step started."""
        rc = self.proc.poll()
        if rc is None:
            return None
        step = self.steps.pop(0)
        dt = time.time() - self.t0
        self.times[step] = dt
        if rc != 0:
            self.close()
            with open(self.run.log_path, errors='replace') as f:
                tail = f.read().splitlines()[-30:]
            raise RunError(
                f'{self.run.name}: tools/{step}.py failed (exit {rc}) after '
                f'{dt:.0f} s; last lines of {self.run.log_path}:\n' +
                '\n'.join(tail))
        rec = self.run.record() or {}
        seconds = dict(rec.get('seconds') or {}, **{step: round(dt, 1)})
        self.run._write('trained' if step == 'train' else 'done',
                        seconds=seconds)
        if not self.steps:
            self.close()
            return True
        self.start_next()
        return False

    def close(self) -> None:
        if self.log is not None and not self.log.closed:
            self.log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close()


def job_env(spec: Spec, jobs: int) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(spec.env)
    if 'OMP_NUM_THREADS' not in os.environ:
        threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
        env['OMP_NUM_THREADS'] = str(threads)
        env['MKL_NUM_THREADS'] = str(threads)
    env['PYTHONUNBUFFERED'] = '1'
    return env


def plan_runs(spec: Spec, work_dir: str, rerun: bool = False) -> List[Run]:
    """Every (arm, seed) run in execution order (seed-major, baseline first
    within a seed), checking definitions of existing runs up front."""
    runs = []
    for seed in spec.seeds:
        for arm in spec.all_arms:
            run = Run(spec, arm, seed, work_dir)
            if arm.kind == 'results':
                if run.status() != 'done':
                    raise SpecError(
                        f'{run.name}: results arm {arm.results!r} has no '
                        f'metrics JSON for seed {seed} (expected '
                        f'{run.dir}/test/<timestamp>/<timestamp>.json or '
                        f'{run.dir}/<timestamp>/<timestamp>.json)')
            elif rerun and osp.isdir(run.dir):
                pass  # replaced when it runs
            else:
                run.status()  # raises on a definition mismatch
            runs.append(run)
    return runs


def execute(runs: List[Run], env: Dict[str, str], jobs: int = 1,
            rerun: bool = False) -> None:
    """Run every unfinished run, ``jobs`` at a time, with progress."""
    todo = []
    for run in runs:
        if run.arm.kind != 'config':
            continue
        if rerun and osp.isdir(run.dir) and \
                not getattr(run, '_replaced', False):
            shutil.rmtree(run.dir)
            run._replaced = True
        if run.status() != 'done':
            todo.append(run)
    n_cfg = sum(r.arm.kind == 'config' for r in runs)
    _log(f'{n_cfg - len(todo)} of {n_cfg} runs already finished (reused); '
         f'{len(todo)} to run, {jobs} at a time with OMP_NUM_THREADS='
         f'{env.get("OMP_NUM_THREADS")}')
    if not todo:
        return
    t0 = time.time()
    pending = [_Job(r, env) for r in todo]
    active, done = [], 0
    try:
        while pending or active:
            while pending and len(active) < jobs:
                job = pending.pop(0)
                _log(f'start {job.run.name} ({" + ".join(job.steps)}; log '
                     f'{job.run.log_path})')
                job.start_next()
                active.append(job)
            time.sleep(0.5)
            for job in list(active):
                finished = job.poll()
                if finished:
                    active.remove(job)
                    done += 1
                    el = time.time() - t0
                    eta = el / done * (len(todo) - done)
                    _log(f'{done}/{len(todo)} done: {job.run.name} in '
                         f'{sum(job.times.values()):.0f} s '
                         f'({", ".join(f"{k} {v:.0f} s" for k, v in job.times.items())}); '  # noqa: E501
                         f'elapsed {el / 60:.1f} min, ETA {eta / 60:.1f} min')
    except BaseException:
        for job in active:
            job.kill()
        raise
