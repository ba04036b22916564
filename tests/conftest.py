"""Shared pytest configuration and fixtures."""
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def pytest_sessionfinish(session, exitstatus):
    # "no tests ran" (exit code 5) must never pass as success in CI.
    if exitstatus == 5:
        session.exitstatus = 1


# --------------------------------------------------------------------------
# Synthetic tiny datasets (equity_tiny_data), generated once per
# test session.  Other tests use these fixture names: keep them stable.
# --------------------------------------------------------------------------
import pytest  # noqa: E402


@pytest.fixture(scope='session')
def tiny_kitti_root(tmp_path_factory):
    """Root (str) of a 64-frame synthetic KITTI dataset, seed 0."""
    from equity_tiny_data import create_tiny_kitti
    root = tmp_path_factory.mktemp('tiny_data') / 'kitti'
    return create_tiny_kitti(str(root), num_frames=64, seed=0)['root']


@pytest.fixture(scope='session')
def tiny_nus_root(tmp_path_factory):
    """Root (str) of a 40-sample synthetic nuScenes (v1.0-mini), seed 0."""
    from equity_tiny_data import create_tiny_nuscenes
    root = tmp_path_factory.mktemp('tiny_data') / 'nuscenes'
    return create_tiny_nuscenes(str(root), num_samples=40, seed=0)['root']


# --------------------------------------------------------------------------
# One tiny trained checkpoint, shared by the tests that need any trained
# tiny KITTI model (training it once saves a training per test).
# --------------------------------------------------------------------------
TINY_KITTI_CFG = osp.join(REPO_ROOT, 'configs', 'tiny',
                          'pointpillars_tiny-kitti-3class.py')


@pytest.fixture(scope='session')
def tiny_kitti_checkpoint(tiny_kitti_root, tmp_path_factory):
    """tools/train.py (in-process) of configs/tiny/pointpillars_tiny-kitti-
    3class.py for one epoch on 4 training frames (one iteration of batch 4),
    no validation: dict(config, work_dir, checkpoint, env). Shared: copy
    ``work_dir`` before writing into it."""
    from _tool_helpers import call_tool
    work = str(tmp_path_factory.mktemp('tiny_kitti_checkpoint') / 'train')
    env = dict(EQUITY_TINY_KITTI=tiny_kitti_root)
    rc = call_tool('train', [
        TINY_KITTI_CFG, '--work-dir', work, '--cfg-options',
        'train_cfg.max_epochs=1', 'train_cfg.val_begin=100',
        'default_hooks.checkpoint.interval=1',
        'train_dataloader.dataset.dataset.indices=4'], env)
    assert rc == 0, f'tools/train.py exited with {rc!r}'
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt), os.listdir(work)
    return dict(config=TINY_KITTI_CFG, work_dir=work, checkpoint=ckpt,
                env=env)
