"""Both methods in one config: the tiny GFL + SSB config trains on CPU
(tools/train.py, in-process) with per-sample equity weights and per-class
SSB weights both active."""
import glob
import json
import os.path as osp

import pytest
from _tool_helpers import REPO, call_tool
from test_equity_train import write_tiny_likelihoods

CFG = osp.join(REPO, 'configs', 'tiny',
               'pointpillars_tiny-kitti-3class_gfl-ssb.py')


@pytest.mark.slow
def test_gfl_and_ssb_train_together(tiny_kitti_root, tmp_path, monkeypatch):
    from mmengine.config import Config
    monkeypatch.setenv('EQUITY_TINY_KITTI', tiny_kitti_root)
    cfg = Config.fromfile(CFG)
    lik_path = str(tmp_path / 'equity_likelihoods.npz')
    write_tiny_likelihoods(cfg, lik_path)
    work = str(tmp_path / 'work')
    # 4 frames, batch 2: 2 iterations an epoch, 3 epochs -> 6 iterations;
    # SSB warms up for 4 and updates every 2 -> updates at iterations 4, 6.
    rc = call_tool('train', [
        CFG, '--work-dir', work, '--cfg-options',
        f'train_dataloader.dataset.likelihood_file={lik_path}',
        'train_dataloader.dataset.dataset.dataset.indices=4',
        'train_dataloader.batch_size=2', 'train_cfg.max_epochs=3',
        'train_cfg.val_begin=100', 'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=3'],
        dict(EQUITY_TINY_KITTI=tiny_kitti_root))
    assert rc == 0, f'tools/train.py exited with {rc!r}'
    rows = [json.loads(line) for line in open(glob.glob(
        osp.join(work, '*', 'vis_data', 'scalars.json'))[0])]
    assert any('equity_weight_mean' in r for r in rows)
    ssb_rows = [r for r in rows if any(k.startswith('ssb/weight_') for k in r)]
    assert ssb_rows, 'SSB weights were never updated'
    weights = {k: v for k, v in ssb_rows[-1].items()
               if k.startswith('ssb/weight_')}
    assert set(weights) == {'ssb/weight_Pedestrian', 'ssb/weight_Cyclist',
                            'ssb/weight_Car'}
    # normalised to mean 1 over classes, finite
    assert abs(sum(weights.values()) / 3 - 1.0) < 1e-4
    # the SSB weights are saved in the checkpoint by the hook (the model
    # state dict stays that of the plain model)
    import torch
    ckpt = torch.load(osp.join(work, 'epoch_3.pth'), map_location='cpu',
                      weights_only=False)
    saved = ckpt['semantic_scale_balance']['class_weights']
    classes = ('Pedestrian', 'Cyclist', 'Car')
    assert saved.tolist() == pytest.approx(
        [weights[f'ssb/weight_{c}'] for c in classes], rel=1e-5)
    assert not [k for k in ckpt['state_dict'] if 'loss_cls' in k]
