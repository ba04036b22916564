"""Installed like a plugin, it works: the wheel built from this tree,
``pip install``-ed (not editable) into a fresh virtual environment that sees
the stack, used from a folder outside the repository: the tiny dataset,
scoring, training and testing through MMDetection3D's own tools/train.py
and tools/test.py (``custom_imports``), the arms comparison on a spec file,
and the smallest efficacy study.

The fresh environment reaches the stack (torch, mmcv, mmdet3d, ...) of the
test's own interpreter through a ``.pth`` line instead of installing it
again (minutes and gigabytes); the test's interpreter's own editable install
of this package is not visible there (a ``.pth`` line adds a folder, not the
``.pth`` files inside it), which the test checks first.
"""
import glob
import json
import os
import os.path as osp
import shutil
import site
import subprocess
import sys
import textwrap

import pytest
from _tool_helpers import REPO

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env, timeout=900):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, (
        f'{" ".join(map(str, cmd))} exited with {r.returncode}:\n'
        f'{r.stdout[-3000:]}\n{r.stderr[-5000:]}')
    return r


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(python of the fresh environment, its environment variables, a work
    folder outside the repository)."""
    tmp = tmp_path_factory.mktemp('installed')
    # build from a copy of the tracked files: building in place would
    # replace the checkout's .mim/configs link by a copy
    src = tmp / 'src'
    files = subprocess.check_output(['git', 'ls-files', '-co',
                                     '--exclude-standard'], cwd=REPO,
                                    text=True).split('\n')
    for f in filter(None, files):
        if osp.isfile(osp.join(REPO, f)):
            os.makedirs(src / osp.dirname(f), exist_ok=True)
            shutil.copy2(osp.join(REPO, f), src / f)
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'EQUITY_TINY_KITTI')}
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
          '--no-build-isolation', '-q', '-w', str(tmp / 'dist'), str(src)],
         tmp, env)
    wheel, = glob.glob(str(tmp / 'dist' / 'mmdet3d_equity-*.whl'))
    venv = tmp / 'venv'
    # without its own pip and setuptools: the stack's (pinned) ones serve
    _run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], tmp,
         env)
    py = str(venv / 'bin' / 'python')
    purelib = subprocess.check_output(
        [py, '-c', 'import sysconfig; print(sysconfig.get_paths()'
         '["purelib"])'], text=True).strip()
    with open(osp.join(purelib, '_equity_test_stack.pth'), 'w') as f:
        f.write('\n'.join(site.getsitepackages()) + '\n')
    # the stack is visible, this package is not (before the install)
    r = subprocess.run([py, '-c', 'import mmdet3d_equity'], cwd=tmp,
                       env=env, capture_output=True, text=True)
    assert r.returncode != 0 and 'mmdet3d_equity' in r.stderr
    _run([py, '-c', 'import torch, mmcv.ops, mmdet3d'], tmp, env)
    # the wheel's requirements resolve against the visible stack, offline
    _run([py, '-m', 'pip', 'install', '-q', '--no-index', wheel], tmp, env)
    work = tmp / 'outside'
    work.mkdir()
    out = _run([py, '-c', 'import mmdet3d_equity, os.path as p; '
                'print(p.dirname(mmdet3d_equity.__file__))'], work, env)
    pkg = out.stdout.strip()
    assert pkg.startswith(str(venv)) and not pkg.startswith(REPO)
    env = dict(env, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return py, env, work, pkg


def test_plugin_workflow_from_an_installed_wheel(installed):
    py, env, work, pkg = installed
    cfgs = osp.join(pkg, '.mim', 'configs', 'tiny')
    assert osp.isfile(osp.join(cfgs, 'pointpillars_tiny-kitti-3class.py'))
    mmdet3d_tools = _run(
        [py, '-c', 'import mmdet3d, os.path as p; print(p.join(p.dirname('
         'mmdet3d.__file__), ".mim", "tools"))'], work, env).stdout.strip()
    data = str(work / 'data' / 'tiny_kitti')
    env = dict(env, EQUITY_TINY_KITTI=data)
    # 1. the tiny dataset and its likelihoods (console script + python -m)
    _run([osp.join(osp.dirname(py), 'mmdet3d-equity-create-tiny-dataset'),
          'kitti', '--out', data, '--frames', '24', '--quiet'], work, env)
    _run([py, '-m', 'mmdet3d_equity.cli.compute_likelihoods',
          osp.join(cfgs, 'pointpillars_tiny-kitti-3class.py'), '--out',
          osp.join(data, 'equity_likelihoods.npz'), '--no-figures'],
         work, env)
    # 2. MMDetection3D's own train.py and test.py on the equity config
    short = ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
             'param_scheduler=[]']
    _run([py, osp.join(mmdet3d_tools, 'train.py'),
          osp.join(cfgs, 'pointpillars_tiny-kitti-3class_equity.py'),
          '--work-dir', 'train', '--cfg-options', *short], work, env)
    ckpt, = glob.glob(str(work / 'train' / 'epoch_1.pth'))
    _run([py, osp.join(mmdet3d_tools, 'test.py'),
          osp.join(cfgs, 'pointpillars_tiny-kitti-3class_equity.py'), ckpt,
          '--work-dir', 'test'], work, env)
    metrics = glob.glob(str(work / 'test' / '*' / '*.json'))
    assert metrics, 'mmdet3d test.py wrote no metrics'
    # 3. the arms comparison on a spec file of results arms
    for arm in ('base', 'eq'):  # <dir>/seed0/<timestamp>/<timestamp>.json
        shutil.copytree(osp.dirname(metrics[0]),
                        work / 'results' / arm / 'seed0' /
                        osp.basename(osp.dirname(metrics[0])))
    spec = work / 'spec.py'
    spec.write_text(textwrap.dedent(f"""\
        seeds = [0]
        metric = '3D_AP40_moderate_loose'
        baseline = dict(name='baseline', results={str(work / 'results' /
                                                       'base')!r})
        arms = [dict(name='equity', results={str(work / 'results' /
                                                  'eq')!r})]
        """))
    _run([py, '-m', 'mmdet3d_equity.cli.compare_arms', '--spec',
          str(spec), '--out-dir', 'report'], work, env)
    with open(work / 'report' / 'benchmark.json') as f:
        report = json.load(f)
    assert sorted(report['runs']) == ['baseline/seed0', 'equity/seed0']
    assert report['rows']
    # 4. the smallest efficacy study: trainings started by the benchmark
    # through the installed package, configs shipped inside it
    study = textwrap.dedent("""\
        from mmdet3d_equity.studies.efficacy import study
        size = dict(study.REDUCED, frames=24, epochs=1, select_seeds=[0],
                    confirm_seeds=[1], sweep_eta=[], oracle_ratios=[],
                    arms=['gfl'])
        study.run_study('study_data', 'study_work', 'efficacy.md', size,
                        jobs=1)
        """)
    env.pop('EQUITY_TINY_KITTI')
    _run([py, '-c', study], work, env)
    doc = (work / 'efficacy.md').read_text()
    assert '## ' in doc and 'gfl' in doc
    logs = glob.glob(str(work / 'study_work' / 'runs' / '*' / 'seed*' /
                         'log.txt'))
    assert logs and all(
        '-m mmdet3d_equity.cli.train' in open(p).read() for p in logs)
    # nothing of the checkout (its stack may live in REPO/.venv)
    checkout = [osp.join(REPO, d) + os.sep
                for d in ('mmdet3d_equity', 'tools', 'configs')]
    assert not any(c in open(p).read() for p in logs for c in checkout)
