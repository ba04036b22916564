"""Calling tools/<name>.py in the test process (its ``main(argv)``), as the
command line would run it from the repository root.

A subprocess costs a fresh interpreter (importing torch, mmdet3d and the
plugin: ~8 s of CPU) and recompiles every numba function it meets (the KITTI
evaluation, the tiny-data converters); tests whose point is not the real
command line (its exit status from a fresh interpreter, a distributed
launch) call the tools in-process instead."""
import contextlib
import glob
import importlib.util
import os
import os.path as osp
import sys
from collections import OrderedDict

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
KITTI_CFG = osp.join(REPO, 'configs', 'tiny',
                     'pointpillars_tiny-kitti-3class.py')


def tool(name):
    spec = importlib.util.spec_from_file_location(
        f'tool_{name}', osp.join(REPO, 'tools', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def snapshot(folder):
    """{relative path: (bytes, mtime_ns)} of every file under folder."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = osp.join(root, f)
            with open(p, 'rb') as fh:
                out[osp.relpath(p, folder)] = (fh.read(),
                                               os.stat(p).st_mtime_ns)
    return out


def exit_code(fn, *args):
    try:
        rc = fn(*args)
    except SystemExit as e:
        rc = e.code
    return rc



def load_tool(name):
    """A fresh module object of the tool ``mmdet3d_equity.cli.<name>``
    (what tools/<name>.py runs)."""
    spec = importlib.util.find_spec(f'mmdet3d_equity.cli.{name}')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def fresh_global_instances():
    """mmengine's named global instances (ManagerMixin: loggers, message
    hubs, visualizers, default scopes) as a fresh process has them: none;
    the test process's own come back afterwards. Without this a second
    Runner in the process reuses the first one's Visualizer (mmdet3d's
    configs name it 'visualizer'), which writes the scalars into the first
    run's log directory."""
    from mmengine.utils import ManagerMixin
    classes, todo = [], [ManagerMixin]
    while todo:
        cls = todo.pop()
        classes.append(cls)
        todo.extend(cls.__subclasses__())
    saved = [(cls, cls._instance_dict) for cls in classes]
    for cls, _ in saved:
        cls._instance_dict = OrderedDict()
    try:
        yield
    finally:
        for cls, instances in saved:
            cls._instance_dict = instances


def call_tool(name, argv, env=None):
    """Run tools/<name>.py's ``main(argv)`` in this process as ``python
    tools/<name>.py ARGV`` would run in the repository root with the extra
    environment variables ``env``; return its exit status (0 when main
    returns normally, else the code it exits with). sys.argv is the command
    line's (argparse names the tool in its messages); mmengine's global
    instances start empty (:func:`fresh_global_instances`); the working
    directory, sys.argv and the environment (``env``, and the LOCAL_RANK
    the runner tools export) are restored afterwards."""
    script = osp.join(REPO, 'tools', f'{name}.py')
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        mp.setattr(sys, 'argv', [script] + list(argv))
        # setenv records the old state: a LOCAL_RANK exported by the tool
        # disappears again with the patch
        mp.setenv('LOCAL_RANK', os.environ.get('LOCAL_RANK', '0'))
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        try:
            with fresh_global_instances():
                rc = load_tool(name).main(list(argv))
        except SystemExit as e:
            rc = e.code
    return 0 if rc is None else rc


def run_logs(work_dir):
    """The log files of the Runner's runs in ``work_dir``
    (``<work_dir>/<timestamp>/<timestamp>.log``), oldest first."""
    return sorted(glob.glob(osp.join(work_dir, '*', '*.log')))


def last_run_log(work_dir):
    """The text of the newest run log in ``work_dir``."""
    logs = run_logs(work_dir)
    assert logs, f'no run log under {work_dir}: {os.listdir(work_dir)}'
    with open(logs[-1]) as f:
        return f.read()
