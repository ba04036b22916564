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
import re
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

from ..evaluation.results import ResultsError, find_metrics_json
from ..utils.errors import RunError  # noqa: F401
from ..utils.fileio import atomic_write_json
from .spec import Arm, Spec, SpecError, merged_options, options_as_args

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


#: ``{{$VAR}}`` / ``{{$VAR:default}}``: an environment variable a config
#: file substitutes when it is parsed (mmengine's syntax)
_ENV_VAR = re.compile(r'\{\{\s*\$(\w+)\s*(?::[^}]*)?\}\}')
_DIGESTS: Dict[Tuple, str] = {}


def config_env_variables(config: str) -> List[str]:
    """The environment variables the config and its ``_base_`` chain
    substitute (``{{$VAR:default}}``), sorted."""
    found = set()
    for path in config_files(config):
        with open(path, encoding='utf-8', errors='replace') as f:
            found.update(_ENV_VAR.findall(f.read()))
    return sorted(found)


def file_digest(path: str) -> Optional[str]:
    """sha256 of a file's bytes (None when it does not exist), cached per
    (path, size, modification time) within the process."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (osp.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


#: config keys that name a data file a run reads (``ann_file`` is joined
#: with its dataset's ``data_root``; the others are used as written)
FILE_KEYS = ('ann_file', 'likelihood_file', 'info_path', 'path')


def _dataset_files(node, key: str, data_root: Optional[str],
                   out: Dict[str, str]) -> None:
    """The files a dataset / evaluator config (pipelines, database samplers
    and slice sources included) reads, under their full config keys:
    ``ann_file`` (joined with its ``data_root`` as mmengine's BaseDataset
    joins them), ``likelihood_file``, and ``info_path`` / ``path`` where they
    name an existing file."""
    if isinstance(node, dict):
        root = node.get('data_root', data_root)
        root = root if isinstance(root, str) else data_root
        for name in FILE_KEYS:
            value = node.get(name)
            if not isinstance(value, str) or not value:
                continue
            path = value
            if name == 'ann_file' and root and not osp.isabs(value) \
                    and '://' not in value:
                path = osp.join(root, value)
            if name in ('ann_file', 'likelihood_file') or osp.isfile(path):
                out[f'{key}.{name}'] = path
        for k, v in node.items():
            if k not in FILE_KEYS:
                _dataset_files(v, f'{key}.{k}', root, out)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            _dataset_files(v, f'{key}.{i}', data_root, out)


def config_input_files(cfg) -> Dict[str, str]:
    """{full config key: path} of the data files a loaded config reads
    (after its ``--cfg-options`` and environment were applied): the info
    files of the train, val and test datasets, the database sampler's, the
    evaluators' (and their slice files), and the likelihood file of an
    EquityDataset."""
    out: Dict[str, str] = {}
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if isinstance(loader, dict):
            _dataset_files(loader.get('dataset'),
                           f'{split}_dataloader.dataset', None, out)
        _dataset_files(cfg.get(f'{split}_evaluator'), f'{split}_evaluator',
                       None, out)
    return out


def run_inputs(cfg, config: str) -> Dict:
    """What a run reads besides its config text: ``files`` {config key:
    {path, sha256}} (:func:`config_input_files`; sha256 None for a missing
    file) and ``env`` {variable: value or None} of the variables the config
    files substitute (:func:`config_env_variables`)."""
    files = {k: dict(path=osp.abspath(p), sha256=file_digest(p))
             for k, p in sorted(config_input_files(cfg).items())}
    env = {v: os.environ.get(v) for v in config_env_variables(config)}
    return dict(files=files, env=env)


class Run:
    """One (arm, seed) of a config arm, or of a results arm.

    ``inputs``: :func:`run_inputs` of the arm's loaded config (the
    preflight passes them); computed from the config when not given."""

    def __init__(self, spec: Spec, arm: Arm, seed: int, work_dir: str,
                 inputs: Optional[Dict] = None):
        self.spec, self.arm, self.seed = spec, arm, seed
        self._inputs = inputs
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
    def inputs(self) -> Dict:
        if self._inputs is None:
            from ..utils.config import load_config
            from .spec import applied_env
            with applied_env(self.spec.env):
                cfg = load_config(self.arm.config,
                                  merged_options(self.spec, self.arm))
                self._inputs = run_inputs(cfg, self.arm.config)
        return self._inputs

    def definition(self) -> Dict:
        return dict(arm=self.arm.name, config=self.arm.config,
                    config_digest=config_digest(self.arm.config),
                    cfg_options=merged_options(self.spec, self.arm),
                    seed=self.seed, env=dict(self.spec.env),
                    inputs=self.inputs())

    def record(self) -> Optional[Dict]:
        """The run's ``run.json`` (None when there is none); a file that is
        not a run record is a :class:`RunError` naming it and the fix."""
        if not osp.lexists(self.record_path):
            return None
        return read_run_record(self.record_path)

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
                f'definition: {_diff(rec.get("definition"), self.definition())}'  # noqa: E501
                '; pass --rerun to replace it, or use another --work-dir')
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


RUN_STATUSES = ('training', 'trained', 'done')


def read_run_record(path: str) -> Dict:
    """Read a ``run.json``: a JSON object whose ``status`` (if any) is one
    of :data:`RUN_STATUSES` and whose ``definition`` and ``seconds`` (if
    any) are objects. Anything else (bytes that are not UTF-8 JSON, another
    JSON value) is a :class:`RunError` naming the file and the fix."""
    fix = ('; pass --rerun to redo the run, or use another --work-dir')
    try:
        with open(path, 'rb') as f:
            rec = json.loads(f.read().decode('utf-8'))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise RunError(f'run record {path} cannot be read as JSON '
                       f'({type(e).__name__}: {e}){fix}') from e
    if not isinstance(rec, dict):
        raise RunError(f'run record {path} is a JSON {type(rec).__name__}, '
                       f'not an object{fix}')
    if 'status' in rec and rec['status'] not in RUN_STATUSES:
        raise RunError(f'run record {path}: status {rec["status"]!r} is not '
                       f'one of {RUN_STATUSES}{fix}')
    for key in ('definition', 'seconds'):
        if rec.get(key) is not None and not isinstance(rec[key], dict):
            raise RunError(f'run record {path}: {key} is not an object{fix}')
    return rec


def _short(digest) -> str:
    return digest[:12] if isinstance(digest, str) else 'missing'


def _diff(old, new) -> str:
    """What differs between two run definitions, in words."""
    if not isinstance(old, dict):
        return 'no definition recorded'
    out = []
    for k in sorted(set(old) | set(new)):
        if k == 'inputs' or old.get(k) == new.get(k):
            continue
        out.append(f'{k} {old.get(k)!r} -> {new.get(k)!r}'
                   if k in ('seed', 'cfg_options', 'env', 'config')
                   else f'{k} differs')
    old_in, new_in = old.get('inputs'), new.get('inputs') or {}
    if not isinstance(old_in, dict):
        out.append('the run recorded no input fingerprints (it was made by '
                   'an earlier version), so it cannot be shown to match')
    else:
        of, nf = old_in.get('files') or {}, new_in.get('files') or {}
        for key in sorted(set(of) | set(nf)):
            a, b = of.get(key), nf.get(key)
            if a == b:
                continue
            if not isinstance(a, dict) or not isinstance(b, dict):
                out.append(f'{key} {"added" if a is None else "removed"}')
            elif a.get('path') != b.get('path'):
                out.append(f'{key} {a.get("path")} -> {b.get("path")}')
            else:
                out.append(f'{key} {b.get("path")} changed since the run '
                           f'was made (sha256 {_short(a.get("sha256"))} -> '
                           f'{_short(b.get("sha256"))})')
        oe, ne = old_in.get('env') or {}, new_in.get('env') or {}
        for var in sorted(set(oe) | set(ne)):
            if oe.get(var) != ne.get(var):
                out.append(f'environment variable {var} '
                           f'{oe.get(var)!r} -> {ne.get(var)!r}')
    return '; '.join(out) or 'differs'


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
        self.started = None
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
        if self.started is None:
            self.started = self.t0
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


def plan_runs(spec: Spec, work_dir: str, rerun: bool = False,
              inputs: Optional[Dict[str, Dict]] = None
              ) -> Tuple[List[Run], List[str]]:
    """Every (arm, seed) run in execution order (seed-major, baseline first
    within a seed), checking the existing runs up front. ``inputs``: the
    :func:`run_inputs` of each config arm (config arms without them are
    skipped: their config failed the preflight). Returns the runs and every
    problem found (a results arm without a seed, a run made with another
    definition), all of them."""
    runs, problems = [], []
    for seed in spec.seeds:
        for arm in spec.all_arms:
            if arm.kind == 'config' and inputs is not None and \
                    arm.name not in inputs:
                continue
            run = Run(spec, arm, seed, work_dir,
                      (inputs or {}).get(arm.name))
            try:
                if arm.kind == 'results':
                    if run.status() != 'done':
                        raise SpecError(
                            f'{run.name}: results arm {arm.results!r} has '
                            f'no metrics JSON for seed {seed} (expected '
                            f'{run.dir}/test/<timestamp>/<timestamp>.json '
                            f'or {run.dir}/<timestamp>/<timestamp>.json)')
                elif not (rerun and osp.isdir(run.dir)):
                    run.status()  # raises on a definition mismatch
            except SpecError as e:
                problems.append(str(e))
            runs.append(run)
    return runs, problems


def estimate_eta(durations: List[float], running: List[float],
                 pending: int, jobs: int) -> Optional[float]:
    """Seconds until every run is done, if each run takes the mean of the
    finished ones' ``durations``: the ``running`` runs (their elapsed
    seconds) finish first, then the ``pending`` runs are started ``jobs``
    at a time on the freed slots. None before any run finished."""
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    slots = sorted(max(0.0, mean - r) for r in running)
    slots += [0.0] * max(0, jobs - len(slots))
    for _ in range(pending):
        slots.sort()
        slots[0] += mean
    return max(slots) if slots else 0.0


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
    active, done, durations = [], 0, []
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
                    durations.append(sum(job.times.values()))
                    now = time.time()
                    el = now - t0
                    eta = estimate_eta(durations,
                                       [now - j.started for j in active],
                                       len(pending), jobs)
                    _log(f'{done}/{len(todo)} done: {job.run.name} in '
                         f'{sum(job.times.values()):.0f} s '
                         f'({", ".join(f"{k} {v:.0f} s" for k, v in job.times.items())}); '  # noqa: E501
                         f'elapsed {el / 60:.1f} min, ETA {eta / 60:.1f} min')
    except BaseException:
        for job in active:
            job.kill()
        raise
