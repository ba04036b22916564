"""Shared pytest configuration and fixtures."""
import os
import os.path as osp
import subprocess
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


# mmengine's progress helpers bind ``file=sys.stdout`` when their module is
# first imported (a default argument). Imported here, under pytest's
# session-wide capture; first imported inside a test that uses capsys, they
# would keep writing to that test's stream after pytest closed it.
import mmengine.utils.progressbar  # noqa: E402,F401

# pytest-xdist (pytest.ini: -n auto) runs one worker per core: each worker,
# and every tool a test starts (they inherit the environment), gets its share
# of the cores, because two processes with torch's default threads on 2
# cores slow each other down about 12x.
if os.environ.get('PYTEST_XDIST_WORKER_COUNT'):
    _threads = str(max(1, (os.cpu_count() or 1) //
                       int(os.environ['PYTEST_XDIST_WORKER_COUNT'])))
    os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = _threads
    import torch  # noqa: E402
    torch.set_num_threads(int(_threads))


def pytest_collection_modifyitems(session, config, items):
    # Under pytest-xdist, the slow tier first (stable: file order within each
    # tier): the tests that run for minutes start at once, side by side, and
    # the many short ones fill the workers afterwards, instead of a long test
    # starting last and running alone.
    if hasattr(config, 'workerinput'):
        items.sort(key=lambda item: item.get_closest_marker('slow') is None)


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


NUS_ARGS = dict(num_samples=40, seed=0)


@pytest.fixture(scope='session', autouse=True)
def _tiny_nus_generation(request, tmp_path_factory):
    """In a session that will use ``tiny_nus_root``: start writing the tiny
    nuScenes dataset right away in a separate process
    (tools/create_tiny_dataset.py, the same call as
    ``create_tiny_nuscenes(root, **NUS_ARGS)``), so that the ~30 s it takes
    run on another core while the first tests run; ``tiny_nus_root`` waits
    for it. Killed at the end of the session if still running."""
    if not any('tiny_nus_root' in getattr(item, 'fixturenames', ())
               for item in request.session.items):
        yield None
        return
    root = tmp_path_factory.mktemp('tiny_data') / 'nuscenes'
    log = root.parent / 'create_tiny_nuscenes.log'
    with open(log, 'w') as fh:
        proc = subprocess.Popen(
            [sys.executable,
             osp.join(REPO_ROOT, 'tools', 'create_tiny_dataset.py'),
             'nuscenes', '--out', str(root),
             '--frames', str(NUS_ARGS['num_samples']),
             '--seed', str(NUS_ARGS['seed']), '--quiet'],
            cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT,
            env=dict(os.environ, OMP_NUM_THREADS='1'))
    yield dict(proc=proc, root=osp.abspath(str(root)), log=str(log))
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope='session')
def tiny_nus_root(_tiny_nus_generation, tmp_path_factory):
    """Root (str) of a 40-sample synthetic nuScenes (v1.0-mini), seed 0."""
    job = _tiny_nus_generation
    if job is None:  # (requested by a test collection did not see)
        from equity_tiny_data import create_tiny_nuscenes
        root = tmp_path_factory.mktemp('tiny_data') / 'nuscenes'
        return create_tiny_nuscenes(str(root), **NUS_ARGS)['root']
    rc = job['proc'].wait()
    if rc != 0:
        with open(job['log']) as f:
            raise RuntimeError(
                f'writing the tiny nuScenes dataset failed (exit status '
                f'{rc}); the output of tools/create_tiny_dataset.py:\n'
                f'{f.read()[-5000:]}')
    return job['root']


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
