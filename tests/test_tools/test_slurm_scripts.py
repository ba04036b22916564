"""tools/slurm_train.sh and tools/slurm_test.sh build MMDetection3D's srun
command line (a stand-in ``srun`` on PATH records the arguments it gets)."""
import os
import os.path as osp
import subprocess

import pytest
from _tool_helpers import REPO

CFG = 'configs/tiny/pointpillars_tiny-kitti-3class.py'


def _run(tmp_path, script, args, **env_extra):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / 'srun_args.txt'
    srun = bin_dir / 'srun'
    srun.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > '
                    f'"{log}"\n')
    srun.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in (
        'GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS', 'PYTHON')}
    env.update(PATH=f'{bin_dir}:{os.environ["PATH"]}', **env_extra)
    r = subprocess.run(['bash', osp.join('tools', script), *args], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=60)
    return r, (log.read_text().splitlines() if log.exists() else None)


@pytest.mark.parametrize('script,what', [('slurm_train.sh', 'WORK_DIR'),
                                         ('slurm_test.sh', 'CHECKPOINT')])
def test_usage_without_enough_arguments(tmp_path, script, what):
    r, args = _run(tmp_path, script, ['part', 'job', CFG])
    assert r.returncode == 2
    assert r.stderr.startswith(
        f'usage: bash tools/{script} PARTITION JOB_NAME CONFIG {what}')
    assert args is None  # srun never started


def test_train_command_line(tmp_path):
    r, args = _run(tmp_path, 'slurm_train.sh',
                   ['gpu', 'eq', CFG, 'work_dirs/x', '--amp'],
                   GPUS='4', GPUS_PER_NODE='2', CPUS_PER_TASK='3',
                   SRUN_ARGS='--quotatype=auto --time=10', PYTHON='py3')
    assert r.returncode == 0, r.stderr
    assert args == [
        '-p', 'gpu', '--job-name=eq', '--gres=gpu:2', '--ntasks=4',
        '--ntasks-per-node=2', '--cpus-per-task=3', '--kill-on-bad-exit=1',
        '--quotatype=auto', '--time=10', 'py3', '-u',
        osp.join(REPO, 'tools', 'train.py'), CFG, '--work-dir=work_dirs/x',
        '--launcher=slurm', '--amp']


def test_test_command_line_defaults(tmp_path):
    r, args = _run(tmp_path, 'slurm_test.sh',
                   ['gpu', 'eq', CFG, 'latest.pth', '--work-dir', 'w'])
    assert r.returncode == 0, r.stderr
    assert args == [
        '-p', 'gpu', '--job-name=eq', '--gres=gpu:8', '--ntasks=8',
        '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1',
        'python', '-u', osp.join(REPO, 'tools', 'test.py'), CFG,
        'latest.pth', '--launcher=slurm', '--work-dir', 'w']
