"""tools/semantic_scale.py end to end on tiny KITTI (in-process): the
report of a checkpoint that fits the config, and a clear error, with no
report, for one that does not (it used to load with strict=False and
measure random weights)."""
import json
import os
import stat

import pytest
import torch
from _tool_helpers import KITTI_CFG, snapshot, tool

CLASSES = ['Pedestrian', 'Cyclist', 'Car']


@pytest.fixture(scope='module')
def tiny_model_state(tiny_kitti_root):
    from mmdet3d.registry import MODELS
    from mmengine.registry import init_default_scope

    from mmdet3d_equity.utils.config import load_config
    cfg = load_config(KITTI_CFG)
    init_default_scope('mmdet3d')
    torch.manual_seed(0)
    return MODELS.build(cfg.model).state_dict()


@pytest.fixture
def kitti_env(tiny_kitti_root, monkeypatch):
    monkeypatch.setenv('EQUITY_TINY_KITTI', tiny_kitti_root)
    return tiny_kitti_root


def test_report_of_a_matching_checkpoint(kitti_env, tiny_model_state,
                                         tmp_path):
    ckpt = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict=tiny_model_state, meta={}), ckpt)
    out = tmp_path / 'report'
    old = os.umask(0o022)
    try:
        report = tool('semantic_scale').main(
            [KITTI_CFG, ckpt, '--out-dir', str(out), '--max-samples', '6',
             '--curve-repeats', '1'])
    finally:
        os.umask(old)
    assert sorted(os.listdir(out)) == ['count_vs_scale.png',
                                       'marginal_effect.png',
                                       'semantic_scale.json']
    for f in os.listdir(out):
        assert stat.S_IMODE(os.stat(out / f).st_mode) == 0o644, f
    with open(out / 'semantic_scale.json') as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(report))
    assert list(saved['classes']) == CLASSES
    assert saved['num_samples'] == 6
    assert sum(c['count'] for c in saved['classes'].values()) > 0
    assert saved['checkpoint'] == ckpt


def test_mismatched_checkpoint_names_the_keys_and_writes_nothing(
        kitti_env, tiny_model_state, tmp_path, capsys):
    bad = dict(tiny_model_state)
    missing = sorted(k for k in bad if k.startswith('bbox_head.'))[0]
    bad.pop(missing)
    bad['foo.weight'] = torch.zeros(3)
    shaped = 'backbone.blocks.0.0.weight'
    bad[shaped] = torch.zeros(1, 1, 1, 1)
    ckpt = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict=bad), ckpt)
    out = tmp_path / 'report'
    out.mkdir()
    (out / 'notes.txt').write_text('kept')
    before = snapshot(out)
    with pytest.raises(SystemExit) as e:
        tool('semantic_scale').main([KITTI_CFG, ckpt, '--out-dir', str(out),
                                     '--max-samples', '2'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f'semantic_scale.py: error: checkpoint {ckpt} does not match the ' \
        'model built from the config: 1 missing key(s): ' + missing in err
    assert '1 unexpected key(s): foo.weight' in err
    assert f'1 shape mismatch(es): {shaped}: checkpoint (1, 1, 1, 1)' in err
    assert snapshot(out) == before
