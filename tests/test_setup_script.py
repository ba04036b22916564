"""tools/setup.sh: a second run installs nothing; bad arguments are clear."""
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _setup(*args):
    env = dict(os.environ, EQUITY_VENV=sys.prefix)
    return subprocess.run(['bash', 'tools/setup.sh', *args], cwd=REPO,
                          env=env, capture_output=True, text=True)


def test_second_run_installs_nothing():
    # The test session runs inside an environment made by setup.sh (CI runs
    # it first), so this is the second run.
    stamp = osp.join(sys.prefix, '.mmdet3d_equity_stamp')
    assert osp.isfile(stamp), 'run `bash tools/setup.sh` first'
    proc = _setup('--install-only')
    assert proc.returncode == 0, proc.stderr
    assert 'environment is up to date (nothing to install)' in proc.stdout
    assert 'installing the stack' not in proc.stdout
    assert 'mmdet3d 1.4.0' in proc.stdout and 'mmcv 2.1.0' in proc.stdout
    assert f'source {sys.prefix}/bin/activate' in proc.stdout


def test_unknown_argument_is_refused():
    proc = _setup('--frobnicate')
    assert proc.returncode == 2
    assert "unknown argument '--frobnicate'" in proc.stderr


def test_bad_wheel_directory_is_refused(tmp_path):
    env = dict(os.environ, EQUITY_VENV=sys.prefix,
               EQUITY_WHEELS=str(tmp_path / 'missing'))
    proc = subprocess.run(['bash', 'tools/setup.sh', '--install-only'],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert 'is not a directory' in proc.stderr
