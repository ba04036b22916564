"""tools/dist_train.sh and tools/dist_test.sh (torchrun, MMDetection3D's
arguments) with 2 gloo processes on CPU and the tiny KITTI config."""
import glob
import json
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys

import pytest
from _tool_helpers import REPO

CFG = 'configs/tiny/pointpillars_tiny-kitti-3class.py'


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(script, args, env_extra):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1',
               PORT=str(_free_port()), **env_extra)
    return subprocess.run(['bash', osp.join('tools', script), *args],
                          cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize('script,n', [('dist_train.sh', 2),
                                      ('dist_test.sh', 3)])
def test_usage_without_enough_arguments(script, n):
    r = _run(script, [CFG], {})
    assert r.returncode == 2
    assert r.stderr.startswith(f'usage: bash tools/{script} CONFIG')


def test_launcher_pytorch_without_torchrun_is_refused(tmp_path, capsys,
                                                     monkeypatch):
    """tools/train.py --launcher pytorch outside torchrun (in-process):
    refused before the Runner, naming the missing variables and the fix."""
    from _tool_helpers import call_tool
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv('MASTER_PORT', '29500')
    rc = call_tool('train', [CFG, '--launcher', 'pytorch', '--work-dir',
                             str(tmp_path / 'work')])
    assert rc == 2
    assert capsys.readouterr().err == (
        'train.py: error: --launcher pytorch needs the environment torchrun '
        'sets (RANK, WORLD_SIZE, MASTER_ADDR missing); start the tool with '
        '`torchrun --nproc_per_node N tools/...py ... --launcher pytorch` or '
        'tools/dist_train.sh / tools/dist_test.sh\n')


@pytest.mark.slow
def test_two_process_train_then_test(tiny_kitti_root, tmp_path):
    env = dict(EQUITY_TINY_KITTI=tiny_kitti_root)
    work = str(tmp_path / 'train')
    # 4 frames, 2 per process: one iteration of the global batch of 4
    r = _run('dist_train.sh', [
        CFG, '2', '--work-dir', work, '--cfg-options',
        'train_cfg.max_epochs=1', 'train_cfg.val_begin=100',
        'default_hooks.checkpoint.interval=1',
        'train_dataloader.dataset.dataset.indices=4',
        'train_dataloader.batch_size=2'], env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    assert 'Distributed training: True' in out
    assert 'GPU number: 2' in out  # mmengine's world size line
    assert 'Epoch(train) [1][1/1]' in out
    assert 'started the gloo process group' in out
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    test_dir = str(tmp_path / 'test')
    preds = str(tmp_path / 'preds.pkl')
    r = _run('dist_test.sh', [CFG, ckpt, '2', '--work-dir', test_dir,
                              '--out', preds], env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    with open(osp.join(tiny_kitti_root, 'ImageSets', 'val.txt')) as f:
        n_val = len(f.read().split())
    with open(preds, 'rb') as f:
        assert len(pickle.load(f)) == n_val  # both ranks' results
    metrics = sorted(glob.glob(osp.join(test_dir, '*', '*.json')))
    with open(metrics[-1]) as f:
        keys = list(json.load(f))
    assert any('Car_3D_AP40_moderate_strict' in k for k in keys)
