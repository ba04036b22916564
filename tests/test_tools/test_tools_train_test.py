"""tools/train.py and tools/test.py: a short CPU run on tiny KITTI and tiny
nuScenes with the stock metrics, and clear errors for bad arguments.

The tools are called in-process (their ``main(argv)``); the real command
line (a fresh interpreter, its exit status) is
tests/test_tools/test_dist_scripts.py's (torchrun of both tools)."""
import glob
import json
import os.path as osp
import shutil

import pytest
from _tool_helpers import REPO, call_tool, last_run_log

KITTI_CFG = osp.join(REPO, 'configs', 'tiny',
                     'pointpillars_tiny-kitti-3class.py')
NUS_CFG = osp.join(REPO, 'configs', 'tiny',
                   'centerpoint-pillar_tiny-nus-3d.py')


def _run(name, argv, env=None):
    rc = call_tool(name, argv, env)
    assert rc == 0, f'tools/{name}.py {argv} exited with {rc!r}'


def _metrics_json(work_dir):
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    assert files, f'no metrics json under {work_dir}'
    with open(files[-1]) as f:
        return json.load(f)


@pytest.mark.slow
def test_train_then_test_tiny_kitti(tiny_kitti_checkpoint, tmp_path):
    # the shared fixture is the training: tools/train.py, 4 frames, batch 4,
    # one iteration, then a checkpoint
    ckpt = tiny_kitti_checkpoint['checkpoint']
    assert osp.isfile(ckpt)
    test_dir = str(tmp_path / 'test')
    out_pkl = str(tmp_path / 'preds.pkl')
    # (KittiMetric needs the whole val split; SliceMetric's dense AP40,
    # tests/test_evaluation/test_slice_metric_kitti.py's subject, is off:
    # it triples the evaluation time and no value here is a dense one)
    _run('test', [KITTI_CFG, ckpt, '--work-dir', test_dir, '--out', out_pkl,
                  '--cfg-options', 'test_evaluator.dense=False'],
         tiny_kitti_checkpoint['env'])
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
    # the config's SliceLogProcessor: the evaluation's log line holds the
    # whole-split keys only (every key is in the metrics JSON above)
    line = [x for x in last_run_log(test_dir).splitlines()
            if 'Epoch(test)' in x and 'SliceMetric slice keys' in x]
    assert len(line) == 1, 'no compact evaluation line'
    n_slice = sum(1 for k in metrics if k.startswith('Kitti metric/@'))
    assert f'(+{n_slice} SliceMetric slice keys' in line[0]
    assert '@fog' not in line[0] and len(line[0]) < len(str(metrics)) / 4


@pytest.mark.slow
def test_resume_from_work_dir(tiny_kitti_checkpoint, tmp_path):
    # a copy of the shared one-epoch run, resumed for a second epoch
    work = str(tmp_path / 'train')
    shutil.copytree(tiny_kitti_checkpoint['work_dir'], work)
    with open(osp.join(work, 'last_checkpoint')) as f:
        last = f.read().strip()
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work, osp.basename(last)))
    _run('train', [KITTI_CFG, '--resume', '--work-dir', work,
                   '--cfg-options', 'train_cfg.val_begin=100',
                   'default_hooks.checkpoint.interval=1',
                   'train_dataloader.dataset.dataset.indices=4',
                   'train_cfg.max_epochs=2'], tiny_kitti_checkpoint['env'])
    assert 'resumed epoch: 1' in last_run_log(work)
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))


@pytest.mark.slow
def test_train_tiny_nuscenes_centerpoint(tiny_nus_root, tmp_path):
    work = str(tmp_path / 'nus')
    _run('train', [NUS_CFG, '--work-dir', work, '--cfg-options',
                   'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                   'default_hooks.checkpoint.interval=1',
                   'train_dataloader.dataset.dataset.indices=4'],
         dict(EQUITY_TINY_NUS=tiny_nus_root))
    # (NuScenesMetric evaluates the whole mini_val split: val is not subset)
    assert 'NuScenes metric/pred_instances_3d_NuScenes/NDS' in \
        last_run_log(work)


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_missing_config_is_a_clear_error(tool, capsys):
    args = ['configs/no_such_config.py']
    if tool == 'test':
        args.append('x.pth')
    assert call_tool(tool, args) == 2
    assert capsys.readouterr().err == (
        f"{tool}.py: error: config file not found: "
        f"'configs/no_such_config.py'. Give the path to an MMDetection3D "
        f"config (e.g. configs/tiny/pointpillars_tiny-kitti-3class.py) or "
        f"a stock one as 'mmdet3d::pointpillars/<name>.py'.\n")


def test_missing_checkpoint_is_a_clear_error(capsys):
    assert call_tool('test', [KITTI_CFG, 'work_dirs/none/epoch_9.pth']) == 2
    assert capsys.readouterr().err == (
        "test.py: error: checkpoint not found: 'work_dirs/none/epoch_9.pth'"
        '. Give the .pth file written by tools/train.py (e.g. '
        'work_dirs/<config>/epoch_1.pth).\n')


def test_missing_resume_checkpoint_is_a_clear_error(tmp_path, capsys):
    nope = str(tmp_path / 'nope.pth')
    assert call_tool('train', [KITTI_CFG, '--work-dir', str(tmp_path),
                               '--resume', nope]) == 2
    assert capsys.readouterr().err == (
        f'train.py: error: --resume checkpoint not found: {nope!r}\n')


def test_bad_out_suffix_and_unknown_flag(capsys):
    assert call_tool('test', [KITTI_CFG, 'README.md', '--out', 'x.json']) \
        == 2
    assert capsys.readouterr().err == (
        "test.py: error: --out must be a .pkl file, got 'x.json'\n")
    assert call_tool('train', [KITTI_CFG, '--no-such-flag']) == 2
    err = capsys.readouterr().err
    assert err.startswith('usage: train.py [-h] ')
    assert err.endswith(
        '\ntrain.py: error: unrecognized arguments: --no-such-flag\n')


def test_train_cli_maps_amp_and_resume_like_mmdet3d():
    from _tool_helpers import load_tool
    train_tool = load_tool('train')
    args = train_tool.parse_args([KITTI_CFG, '--amp', '--resume',
                                  '--auto-scale-lr'])
    cfg = train_tool.build_cfg(args)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.auto_scale_lr.enable is True
    assert cfg.work_dir == osp.join('./work_dirs',
                                    'pointpillars_tiny-kitti-3class')
