"""tools/train.py and tools/test.py: a short CPU run on tiny KITTI and tiny
nuScenes with the stock metrics, and clear errors for bad arguments."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
KITTI_CFG = 'configs/tiny/pointpillars_tiny-kitti-3class.py'
NUS_CFG = 'configs/tiny/centerpoint-pillar_tiny-nus-3d.py'


def _run(args, env_extra=None, check=True):
    env = dict(os.environ, **(env_extra or {}))
    proc = subprocess.run([sys.executable] + args, cwd=REPO, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n'
            f'{proc.stderr[-5000:]}')
    return proc


def _metrics_json(work_dir):
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    assert files, f'no metrics json under {work_dir}'
    with open(files[-1]) as f:
        return json.load(f)


def test_train_then_test_tiny_kitti(tiny_kitti_root, tmp_path):
    env = dict(EQUITY_TINY_KITTI=tiny_kitti_root)
    work = str(tmp_path / 'train')
    # 8 training frames, batch 4: two iterations, then a checkpoint.
    _run(['tools/train.py', KITTI_CFG, '--work-dir', work, '--cfg-options',
          'train_cfg.max_epochs=1', 'train_cfg.val_interval=100',
          'default_hooks.checkpoint.interval=1',
          'train_dataloader.dataset.dataset.indices=8'], env)
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    test_dir = str(tmp_path / 'test')
    out_pkl = str(tmp_path / 'preds.pkl')
    _run(['tools/test.py', KITTI_CFG, ckpt, '--work-dir', test_dir,
          '--out', out_pkl], env)  # (KittiMetric needs the whole val split)
    metrics = _metrics_json(test_dir)
    keys = [k for k in metrics if k.startswith('Kitti metric/')]
    assert any('Car_3D_AP40_moderate_strict' in k for k in keys), keys[:5]
    # the tiny config's SliceMetric adds the frame-mode slices (counts are
    # not APs)
    assert metrics['Kitti metric/@fog:count/num_samples'] >= 1
    assert 'Kitti metric/pred_instances_3d/KITTI/Car_3D_AP40_moderate_' \
        'strict' in metrics
    assert all(0.0 <= metrics[k] <= 100.0 for k in keys
               if ':count/' not in k)
    assert osp.isfile(out_pkl)


def test_resume_from_work_dir(tiny_kitti_root, tmp_path):
    env = dict(EQUITY_TINY_KITTI=tiny_kitti_root)
    work = str(tmp_path / 'train')
    common = ['--work-dir', work, '--cfg-options', 'train_cfg.val_interval=100',
              'default_hooks.checkpoint.interval=1',
              'train_dataloader.dataset.dataset.indices=4']
    _run(['tools/train.py', KITTI_CFG] + common + ['train_cfg.max_epochs=1'],
         env)
    proc = _run(['tools/train.py', KITTI_CFG, '--resume'] + common +
                ['train_cfg.max_epochs=2'], env)
    assert 'resumed epoch: 1' in (proc.stdout + proc.stderr)
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))


def test_train_tiny_nuscenes_centerpoint(tiny_nus_root, tmp_path):
    env = dict(EQUITY_TINY_NUS=tiny_nus_root)
    work = str(tmp_path / 'nus')
    _run(['tools/train.py', NUS_CFG, '--work-dir', work, '--cfg-options',
          'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
          'default_hooks.checkpoint.interval=1',
          'train_dataloader.dataset.dataset.indices=4'], env)
    # (NuScenesMetric evaluates the whole mini_val split: val is not subset)
    log = open(glob.glob(osp.join(work, '*', '*.log'))[-1]).read()
    assert 'NuScenes metric/pred_instances_3d_NuScenes/NDS' in log


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_missing_config_is_a_clear_error(tool, tmp_path):
    args = [f'tools/{tool}.py', 'configs/no_such_config.py']
    if tool == 'test':
        args.append('x.pth')
    proc = _run(args, check=False)
    assert proc.returncode != 0
    assert 'config file not found' in proc.stderr
    assert 'no_such_config.py' in proc.stderr


def test_missing_checkpoint_is_a_clear_error():
    proc = _run(['tools/test.py', KITTI_CFG, 'work_dirs/none/epoch_9.pth'],
                check=False)
    assert proc.returncode != 0
    assert 'checkpoint not found' in proc.stderr


def test_missing_resume_checkpoint_is_a_clear_error(tmp_path):
    proc = _run(['tools/train.py', KITTI_CFG, '--work-dir', str(tmp_path),
                 '--resume', str(tmp_path / 'nope.pth')], check=False)
    assert proc.returncode != 0
    assert '--resume checkpoint not found' in proc.stderr


def test_bad_out_suffix_and_unknown_flag():
    proc = _run(['tools/test.py', KITTI_CFG, 'README.md', '--out', 'x.json'],
                check=False)
    assert proc.returncode != 0 and '--out must be a .pkl' in proc.stderr
    proc = _run(['tools/train.py', KITTI_CFG, '--no-such-flag'], check=False)
    assert proc.returncode == 2
    assert 'unrecognized arguments: --no-such-flag' in proc.stderr


def test_train_cli_maps_amp_and_resume_like_mmdet3d():
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import train as train_tool
    finally:
        sys.path.pop(0)
    args = train_tool.parse_args([KITTI_CFG, '--amp', '--resume',
                                  '--auto-scale-lr'])
    cfg = train_tool.build_cfg(args)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.auto_scale_lr.enable is True
    assert cfg.work_dir == osp.join('./work_dirs',
                                    'pointpillars_tiny-kitti-3class')
