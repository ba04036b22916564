"""Shared pytest configuration and fixtures."""
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
