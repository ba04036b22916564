"""A real `tools/train.py --resume` (in-process) of the tiny SSB config
restores the SSB feature store and the class weights saved in the
checkpoint."""
import glob
import os.path as osp

import pytest
import torch
from _tool_helpers import REPO, call_tool, last_run_log

CFG = osp.join(REPO, 'configs', 'tiny',
               'pointpillars_tiny-kitti-3class_ssb.py')


def _train(work, env, epochs, resume=False):
    # 4 frames, batch 2: 2 iterations an epoch; warm-up 4, update every 2
    argv = [CFG, '--work-dir', work]
    if resume:
        argv.append('--resume')
    argv += ['--cfg-options', 'train_dataloader.dataset.dataset.indices=4',
             'train_dataloader.batch_size=2', f'train_cfg.max_epochs={epochs}',
             'train_cfg.val_begin=100', 'default_hooks.checkpoint.interval=1']
    rc = call_tool('train', argv, env)
    assert rc == 0, f'tools/train.py exited with {rc!r}'
    return last_run_log(work)


def _ssb_weights(path):
    state = torch.load(path, map_location='cpu', weights_only=False)
    # saved by the hook; the model state dict is the plain model's
    assert not [k for k in state['state_dict'] if 'loss_cls' in k]
    return state['semantic_scale_balance']['class_weights'], state


@pytest.mark.slow
def test_resume_restores_store_and_weights(tiny_kitti_root, tmp_path):
    env = dict(EQUITY_TINY_KITTI=tiny_kitti_root)
    work = str(tmp_path / 'work')
    _train(work, env, epochs=3)  # updates at iterations 4 and 6
    w3, state3 = _ssb_weights(osp.join(work, 'epoch_3.pth'))
    assert not torch.allclose(w3, torch.ones_like(w3)), \
        'SSB weights never left 1: no update happened before the checkpoint'
    from mmdet3d_equity.engine.hooks.ssb_hook import CKPT_KEY
    assert CKPT_KEY in state3, \
        f'no SSB store in the checkpoint: {list(state3)}'
    out = _train(work, env, epochs=4, resume=True)
    assert 'resumed epoch: 3' in out
    assert ('SemanticScaleBalanceHook: restored the feature store from the '
            'checkpoint') in out
    # the store was full of objects, not rebuilt from scratch
    assert 'objects per class: [0, 0, 0]' not in out
    assert f'and the class weights {w3.tolist()}' in out
    assert glob.glob(osp.join(work, 'epoch_4.pth'))
