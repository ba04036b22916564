"""The tools as the command line runs them (a fresh interpreter): no
pkg_resources deprecation warning, and create_tiny_dataset --quiet prints
no progress bar (mmengine's bars are bound to the stdout object when
mmengine is imported, so redirecting sys.stdout did not silence them)."""
import subprocess
import sys

import pytest
from _tool_helpers import KITTI_CFG, REPO


def _run(args, **kwargs):
    return subprocess.run([sys.executable, '-W', 'default', '-m'] + args,
                          cwd=REPO, capture_output=True, text=True,
                          **kwargs)


def test_a_tool_prints_no_pkg_resources_warning(tmp_path):
    # the config is loaded (mmengine imports pkg_resources then), then the
    # override is refused: seconds, nothing trained
    proc = _run(['mmdet3d_equity.cli.train', KITTI_CFG, '--work-dir',
                 str(tmp_path), '--cfg-options', 'data_root=/x/'])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'pkg_resources' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "train.py: error: --cfg-options data_root=/x/: 'data_root' is a "
        'variable of the config file')


@pytest.mark.slow
def test_create_tiny_dataset_quiet_prints_no_progress_bar(tmp_path):
    proc = _run(['mmdet3d_equity.cli.create_tiny_dataset', 'kitti', '--out',
                 str(tmp_path / 'k'), '--frames', '16', '--quiet'])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'task/s' not in proc.stdout and 'ETA' not in proc.stdout
    assert '[>' not in proc.stdout
    assert proc.stdout.lstrip().startswith('kitti tiny dataset written to')
    assert 'pkg_resources' not in proc.stderr
