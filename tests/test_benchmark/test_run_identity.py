"""A benchmark run is bound to everything that determines its result: a
finished run whose likelihood file was re-scored, whose info files were
regenerated or whose configs' environment variables changed is refused,
naming what changed and --rerun (no training: run records are written by
hand)."""
import json
import os
import os.path as osp

import pytest

from mmdet3d_equity.benchmark.runs import (
    Run,
    config_env_variables,
    config_input_files,
    plan_runs,
    read_run_record,
    run_inputs,
)
from mmdet3d_equity.benchmark.spec import Arm, Spec, SpecError
from mmdet3d_equity.utils.config import load_config
from mmdet3d_equity.utils.errors import EquityError, RunError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KITTI_CFG = osp.join(REPO, 'configs', 'tiny',
                     'pointpillars_tiny-kitti-3class.py')
EQ_CFG = osp.join(REPO, 'configs', 'tiny',
                  'pointpillars_tiny-kitti-3class_equity.py')
INFOS = ('kitti_infos_train.pkl', 'kitti_infos_val.pkl',
         'kitti_dbinfos_train.pkl', 'frame_modes.json',
         'equity_likelihoods.npz')


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """A data root with stand-in files (the identity hashes bytes; nothing
    reads them as data here)."""
    root = tmp_path / 'data'
    root.mkdir()
    for name in INFOS:
        (root / name).write_bytes(f'{name} v1'.encode())
    monkeypatch.setenv('EQUITY_TINY_KITTI', str(root))
    return root


def _spec(**options):
    return Spec(baseline=Arm('baseline', config=KITTI_CFG),
                arms=[Arm('gfl', config=EQ_CFG, cfg_options=options)],
                seeds=[0])


def _finished(spec, arm, work):
    run = Run(spec, arm, 0, str(work))
    run._write('done')
    return run


def test_inputs_name_every_file_and_variable_the_config_reads(data_root):
    cfg_keys = config_input_files(load_config(EQ_CFG))
    assert cfg_keys['train_dataloader.dataset.likelihood_file'] == \
        f'{data_root}/equity_likelihoods.npz'
    assert cfg_keys['train_dataloader.dataset.dataset.dataset.ann_file'] \
        == f'{data_root}/kitti_infos_train.pkl'
    assert cfg_keys['test_dataloader.dataset.ann_file'] == \
        f'{data_root}/kitti_infos_val.pkl'
    assert cfg_keys['test_evaluator.metric.ann_file'] == \
        f'{data_root}/kitti_infos_val.pkl'
    assert cfg_keys['test_evaluator.slices.0.path'] == \
        f'{data_root}/frame_modes.json'
    assert any(k.endswith('db_sampler.info_path') and
               v == f'{data_root}/kitti_dbinfos_train.pkl'
               for k, v in cfg_keys.items())
    assert config_env_variables(EQ_CFG) == ['EQUITY_TINY_KITTI']


def test_a_rescored_likelihood_file_is_refused(data_root, tmp_path):
    spec = _spec()
    _finished(spec, spec.arms[0], tmp_path / 'wd')
    assert Run(spec, spec.arms[0], 0, str(tmp_path / 'wd')).status() == \
        'done'  # unchanged: reused
    (data_root / 'equity_likelihoods.npz').write_bytes(b're-scored')
    with pytest.raises(SpecError) as e:
        Run(spec, spec.arms[0], 0, str(tmp_path / 'wd')).status()
    msg = str(e.value)
    assert 'gfl/seed0' in msg and 'holds a run made with another ' \
        'definition' in msg
    assert (f'train_dataloader.dataset.likelihood_file {data_root}/'
            'equity_likelihoods.npz changed since the run was made') in msg
    assert '--rerun' in msg


def test_regenerated_infos_and_another_data_root_are_refused(
        data_root, tmp_path, monkeypatch):
    spec = _spec()
    _finished(spec, spec.baseline, tmp_path / 'wd')
    (data_root / 'kitti_infos_val.pkl').write_bytes(b'regenerated')
    with pytest.raises(SpecError) as e:
        Run(spec, spec.baseline, 0, str(tmp_path / 'wd')).status()
    assert 'test_dataloader.dataset.ann_file' in str(e.value)
    assert 'test_evaluator.metric.ann_file' in str(e.value)
    (data_root / 'kitti_infos_val.pkl').write_bytes(b'kitti_infos_val.pkl v1')
    assert Run(spec, spec.baseline, 0, str(tmp_path / 'wd')).status() == \
        'done'
    other = tmp_path / 'other'
    other.mkdir()
    for name in INFOS:
        (other / name).write_bytes((data_root / name).read_bytes())
    monkeypatch.setenv('EQUITY_TINY_KITTI', str(other))
    with pytest.raises(SpecError) as e:
        Run(spec, spec.baseline, 0, str(tmp_path / 'wd')).status()
    assert (f"environment variable EQUITY_TINY_KITTI '{data_root}' -> "
            f"'{other}'") in str(e.value)


def test_plan_runs_reports_every_changed_run(data_root, tmp_path):
    spec = _spec()
    for arm in spec.all_arms:
        _finished(spec, arm, tmp_path / 'wd')
    for name in ('kitti_infos_train.pkl', 'equity_likelihoods.npz'):
        (data_root / name).write_bytes(b'changed')
    inputs = {a.name: run_inputs(load_config(a.config), a.config)
              for a in spec.all_arms}
    runs, problems = plan_runs(spec, str(tmp_path / 'wd'), inputs=inputs)
    assert len(runs) == 2 and len(problems) == 2
    assert problems[0].startswith('baseline/seed0') and \
        problems[1].startswith('gfl/seed0')
    assert 'likelihood_file' in problems[1]
    # --rerun: nothing refused, the runs are replaced when they run
    assert plan_runs(spec, str(tmp_path / 'wd'), True, inputs)[1] == []


def test_a_record_without_inputs_is_refused(data_root, tmp_path):
    spec = _spec()
    run = _finished(spec, spec.baseline, tmp_path / 'wd')
    rec = json.loads(open(run.record_path).read())
    del rec['definition']['inputs']
    with open(run.record_path, 'w') as f:
        json.dump(rec, f)
    with pytest.raises(SpecError) as e:
        Run(spec, spec.baseline, 0, str(tmp_path / 'wd')).status()
    assert 'recorded no input fingerprints' in str(e.value)


@pytest.mark.parametrize('text, message', [
    (b'{"status": "do', 'cannot be read as JSON'),
    (b'\xff\xfe', 'cannot be read as JSON'),
    (b'[1, 2]', 'is a JSON list, not an object'),
    (b'{"status": "finished"}', "status 'finished' is not one of"),
    (b'{"definition": 3}', 'definition is not an object'),
])
def test_a_damaged_record_is_one_error(tmp_path, text, message):
    path = tmp_path / 'run.json'
    path.write_bytes(text)
    with pytest.raises(RunError) as e:
        read_run_record(str(path))
    assert isinstance(e.value, EquityError)
    assert str(path) in str(e.value) and message in str(e.value)
    assert '--rerun' in str(e.value)
    os.remove(path)
