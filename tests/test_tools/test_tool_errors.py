"""Every tool keeps its promise (docs/errors.md): a mistake is one line
``<tool>: error: ...`` with exit status 2, also when it is found while the
config or the Runner is built, or once training started; what the config
needs of the machine (AMP, KittiMetric's CUDA kernels) is checked before
the Runner is built. The tools are called in-process (no data is read:
every case fails before the datasets are built)."""
import os.path as osp

import pytest
from _tool_helpers import KITTI_CFG, REPO, call_tool

EQ_CFG = osp.join(REPO, 'configs', 'tiny',
                  'pointpillars_tiny-kitti-3class_equity.py')


def _no_cuda():
    import torch

    from mmdet3d_equity.evaluation.kitti_cpu_iou import numba_cuda_available
    return not torch.cuda.is_available() and not numba_cuda_available()


@pytest.fixture
def work(tmp_path):
    return str(tmp_path / 'work')


def _one_line(capsys, tool):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f'{tool}: error: '), err[-5:]
    assert 'Traceback' not in '\n'.join(err)
    return err[-1]


def test_a_misspelt_loss_key_is_one_line_naming_the_key(work, capsys):
    rc = call_tool('train', [EQ_CFG, '--work-dir', work, '--cfg-options',
                             'custom_hooks.0.loss.etaa=0.3'])
    assert rc == 2
    line = _one_line(capsys, 'train.py')
    assert "custom_hooks.0.loss.etaa: GeneralizedFocalLoss has no argument " \
        "'etaa'; it takes eta, gamma" in line
    assert 'correct or remove the key' in line


def test_an_unregistered_type_is_one_line(work, capsys):
    rc = call_tool('train', [KITTI_CFG, '--work-dir', work, '--cfg-options',
                             'model.type=VoxelNett'])
    assert rc == 2
    line = _one_line(capsys, 'train.py')
    assert "type='VoxelNett' (model) is not registered in the " \
        'mmdet3d::model registry' in line


def test_an_error_raised_in_the_built_class_keeps_its_traceback(work):
    """A bug (an error raised by the code of the class, not by building its
    config) is not turned into a one-line config error."""
    from mmdet3d_equity.apis.runner import config_build_errors

    class Broken:
        def __init__(self):
            raise TypeError('a bug inside __init__')

    from mmengine.registry import Registry
    reg = Registry('test_broken')
    reg.register_module(module=Broken)
    with pytest.raises(TypeError, match='a bug inside __init__'):
        with config_build_errors({}):
            reg.build(dict(type='Broken'))


@pytest.mark.skipif(not _no_cuda(), reason='checks a machine without CUDA')
def test_amp_on_a_machine_without_gpu_is_refused_up_front(work, capsys):
    rc = call_tool('train', [KITTI_CFG, '--work-dir', work, '--amp'])
    assert rc == 2
    line = _one_line(capsys, 'train.py')
    assert 'AMP (--amp, optim_wrapper.type=AmpOptimWrapper) needs a GPU' \
        in line and 'drop --amp' in line


@pytest.mark.skipif(not _no_cuda(), reason='checks a machine without CUDA')
@pytest.mark.parametrize('tool, option, key', [
    ('train', 'val_evaluator.metric.type=KittiMetric',
     'val_evaluator.metric'),
    ('train', 'val_evaluator.type=KittiMetric', 'val_evaluator'),
    ('test', 'test_evaluator.metric.type=KittiMetric',
     'test_evaluator.metric'),
])
def test_stock_kitti_metric_without_cuda_is_refused_before_training(
        work, tmp_path, capsys, tool, option, key):
    ckpt = tmp_path / 'epoch_1.pth'
    ckpt.write_bytes(b'')
    args = [KITTI_CFG] + ([str(ckpt)] if tool == 'test' else [])
    rc = call_tool(tool, args + ['--work-dir', work, '--cfg-options',
                                 option])
    assert rc == 2
    line = _one_line(capsys, f'{tool}.py')
    assert f"{key} is mmdet3d's KittiMetric, which computes its rotated " \
        'IoU with numba CUDA kernels, and this machine has no CUDA' in line
    assert f"Use {key}.type='KittiCPUMetric'" in line
    assert not osp.exists(osp.join(work, 'epoch_1.pth'))


def test_an_error_raised_once_training_started_is_one_line(
        work, capsys, monkeypatch):
    """E.g. an unsupported head, found by the EquityHook when training
    starts: one line, exit status 2."""
    from mmengine.runner import Runner

    from mmdet3d_equity.utils.errors import UnsupportedHeadError

    def train(self):
        raise UnsupportedHeadError('EquityHook: the head X is not supported;'
                                   ' use one of ...')

    monkeypatch.setattr(Runner, 'train', train)
    rc = call_tool('train', [KITTI_CFG, '--work-dir', work])
    assert rc == 2
    assert _one_line(capsys, 'train.py') == (
        'train.py: error: EquityHook: the head X is not supported; use one '
        'of ...')


@pytest.mark.parametrize('tool, args', [
    ('compute_likelihoods', ['--out', '{tmp}/lik.npz']),
    ('score_split', ['--scorer', '{tmp}/s.npz', '--out', '{tmp}/v.npz']),
    ('semantic_scale', ['{tmp}/c.pth', '--out-dir', '{tmp}/ss']),
    ('test', ['{tmp}/c.pth', '--work-dir', '{tmp}/w']),
    ('train', ['--work-dir', '{tmp}/w']),
])
def test_every_tool_refuses_an_override_that_would_change_nothing(
        tmp_path, capsys, tool, args):
    """`--cfg-options data_root=OTHER/` used to be dropped by the scoring
    tools (the config's own data root was scored); every tool loads the
    config the same way as train.py and refuses it, naming the keys that
    hold the data root."""
    (tmp_path / 'c.pth').write_bytes(b'')
    argv = [KITTI_CFG] + [a.format(tmp=tmp_path) for a in args] + [
        '--cfg-options', 'data_root=/other/']
    rc = call_tool(tool, argv)
    assert rc == 2
    line = _one_line(capsys, f'{tool}.py')
    assert "--cfg-options data_root=/other/: 'data_root' is a variable of " \
        'the config file' in line
    assert 'Override the Runner keys that hold its value instead: ' \
        'train_dataloader.dataset.dataset.data_root' in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ['c.pth']


def test_test_out_that_is_a_directory_is_refused_before_testing(
        tmp_path, capsys):
    """The predictions are dumped after the whole test: a --out that is a
    directory is refused first."""
    ckpt = tmp_path / 'epoch_1.pth'
    ckpt.write_bytes(b'')
    out = tmp_path / 'preds.pkl'
    out.mkdir()
    rc = call_tool('test', [KITTI_CFG, str(ckpt), '--work-dir',
                            str(tmp_path / 'w'), '--out', str(out)])
    assert rc == 2
    assert _one_line(capsys, 'test.py') == (
        f'test.py: error: the --out path {out} is an existing directory, '
        'which a file cannot replace; choose another path (or remove the '
        'directory)')
    assert not (tmp_path / 'w').exists()


def test_an_error_of_a_dataloader_worker_is_still_one_line(capsys):
    """torch re-raises a worker's error in the main process with the
    worker's traceback as its message; the tools print the original
    message, saying it came from the worker."""
    import sys

    from torch._utils import ExceptionWrapper

    from mmdet3d_equity.apis.errors import report_error
    from mmdet3d_equity.utils.errors import SampleFileError
    try:
        raise SampleFileError('EquityDataset: P (sample 7) is empty (0 '
                              'bytes); restore the file')
    except SampleFileError:
        wrapped = ExceptionWrapper(sys.exc_info(),
                                   where='in DataLoader worker process 1')
    with pytest.raises(SampleFileError) as e:
        wrapped.reraise()
    assert 'Original Traceback' in str(e.value)
    assert report_error('train.py', e.value) == 2
    assert capsys.readouterr().err == (
        'train.py: error: EquityDataset: P (sample 7) is empty (0 bytes); '
        'restore the file (in DataLoader worker process 1)\n')


def test_the_machine_check_finds_kitti_metric_in_every_evaluator_form():
    from mmengine.config import Config

    from mmdet3d_equity.utils.config import ConfigError
    from mmdet3d_equity.utils.config_checks import check_machine
    kitti = dict(type='KittiMetric', ann_file='x.pkl')
    for evaluator, key in (
            (kitti, 'test_evaluator'),
            ([dict(type='KittiCPUMetric'), kitti], 'test_evaluator.1'),
            (dict(metrics=kitti), 'test_evaluator.metrics.0'),
            (dict(type='SliceMetric', metric=kitti), 'test_evaluator.metric')):
        cfg = Config(dict(test_evaluator=evaluator))
        with pytest.raises(ConfigError, match=f'^{key} is mmdet3d'):
            check_machine(cfg, False, lambda: False)
        check_machine(cfg, False, lambda: True)  # a machine with CUDA
    # a train config is checked for its val evaluator only if it validates
    cfg = Config(dict(val_evaluator=kitti, val_dataloader=dict(),
                      val_cfg=None))
    check_machine(cfg, True, lambda: False)
    cfg.val_cfg = dict(type='ValLoop')
    with pytest.raises(ConfigError, match='^val_evaluator is mmdet3d'):
        check_machine(cfg, True, lambda: False)


def test_every_tool_names_itself_as_its_script_in_error_lines():
    """Every tool's main prints its errors as one line starting with the
    name of its script in tools/ ('<tool>.py: error: ...'), and every
    script of tools/ has such a tool."""
    import glob
    import importlib
    import os.path as osp
    import pkgutil

    from _tool_helpers import REPO

    import mmdet3d_equity.cli as cli
    names = [m.name for m in pkgutil.iter_modules(cli.__path__)
             if not m.name.startswith('_')]
    assert names
    for name in names:
        main = importlib.import_module(f'mmdet3d_equity.cli.{name}').main
        assert getattr(main, 'tool', None) == f'{name}.py', name
    scripts = {osp.basename(p)[:-3]
               for p in glob.glob(osp.join(REPO, 'tools', '*.py'))}
    assert scripts == set(names)
