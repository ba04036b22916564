"""tools/setup.sh: a first run installs and stamps, a second run installs
nothing; bad arguments are clear.

The runs use a fresh virtual environment in a temporary folder, never the
one running the tests (a run stamped for another checkout, e.g. a git
worktree sharing it, would reinstall this checkout into it). Its
site-packages lists the running interpreter's (a .pth file), so the whole
stack is already there: the first run installs only this checkout
(editable, no download) and writes the stamp; the second must find
everything up to date."""
import hashlib
import os
import os.path as osp
import site
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _setup(venv, *args, **env):
    env = dict(os.environ, EQUITY_VENV=str(venv), **env)
    return subprocess.run(['bash', 'tools/setup.sh', *args], cwd=REPO,
                          env=env, capture_output=True, text=True,
                          timeout=900)


def _running_site_packages():
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and osp.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if osp.isdir(d)]


def _digest(paths):
    """sha256 of the files among ``paths`` (missing ones count as such)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode())
        if osp.isfile(p):
            with open(p, 'rb') as f:
                h.update(f.read())
        else:
            h.update(b'<missing>')
    return h.hexdigest()


@pytest.fixture
def bare_venv(tmp_path):
    """A new virtual environment (no pip of its own) whose site-packages
    also lists the running interpreter's."""
    venv = tmp_path / 'venv'
    proc = subprocess.run(
        [sys.executable, '-m', 'venv', '--without-pip', str(venv)],
        capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        if os.environ.get('CI'):
            pytest.fail(f'cannot create a virtual environment with '
                        f'{sys.executable} -m venv:\n{proc.stderr}')
        pytest.skip(f'{sys.executable} cannot create a virtual environment '
                    f'(python -m venv failed), which setup.sh needs: '
                    f'{proc.stderr.strip()[-300:]}')
    py = venv / 'bin' / 'python'
    purelib = subprocess.run(
        [str(py), '-c', 'import sysconfig; print(sysconfig.get_path('
         '"purelib"))'], capture_output=True, text=True, check=True,
        timeout=120).stdout.strip()
    with open(osp.join(purelib, 'running_interpreter.pth'), 'w') as f:
        f.write('\n'.join(_running_site_packages()) + '\n')
    return venv


@pytest.mark.slow
def test_second_run_installs_nothing(bare_venv):
    # what a run stamped for another checkout would replace in the running
    # environment: it must stay as it is
    running = [osp.join(sys.prefix, '.mmdet3d_equity_stamp')] + [
        osp.join(d, f) for d in _running_site_packages()
        for f in sorted(os.listdir(d)) if 'mmdet3d_equity' in f and
        osp.isfile(osp.join(d, f))]
    before = _digest(running)
    first = _setup(bare_venv, '--install-only')
    assert first.returncode == 0, first.stdout + first.stderr
    assert f'[setup] installing the stack into {bare_venv}\n' in first.stdout
    assert '[setup] stack installed\n' in first.stdout
    assert osp.isfile(bare_venv / '.mmdet3d_equity_stamp')

    proc = _setup(bare_venv, '--install-only')
    assert proc.returncode == 0, proc.stderr
    assert '[setup] environment is up to date (nothing to install)\n' in \
        proc.stdout
    assert 'installing the stack' not in proc.stdout
    assert 'mmdet3d 1.4.0' in proc.stdout and 'mmcv 2.1.0' in proc.stdout
    assert f'[setup] activate it with:  source {bare_venv}/bin/activate\n' \
        in proc.stdout
    assert _digest(running) == before


def test_unknown_argument_is_refused(tmp_path):
    proc = _setup(tmp_path / 'venv', '--frobnicate')
    assert proc.returncode == 2
    assert proc.stderr == \
        "setup.sh: unknown argument '--frobnicate' (see --help)\n"
    assert not (tmp_path / 'venv').exists()


def test_bad_wheel_directory_is_refused(tmp_path):
    missing = tmp_path / 'missing'
    proc = _setup(tmp_path / 'venv', '--install-only',
                  EQUITY_WHEELS=str(missing))
    assert proc.returncode == 2
    assert proc.stderr == \
        f'setup.sh: EQUITY_WHEELS={missing} is not a directory\n'
    assert not (tmp_path / 'venv').exists()
