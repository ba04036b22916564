"""The SSB configs load through mmdet3d:: inheritance, leave the stock model
untouched (the hook wraps the built loss) and set every SSB option once, in
the SemanticScaleBalanceHook."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# (configs on mmdetection3d's projects/ are checked in
# test_equity_configs.py, against MMDET3D_ROOT)
CONFIGS = sorted(c for c in glob.glob(osp.join(ROOT, 'configs', '*',
                                               '*ssb*.py'))
                 if '{{$MMDET3D_ROOT' not in open(c).read())


def test_there_are_kitti_nuscenes_and_tiny_ssb_configs():
    dirs = {osp.basename(osp.dirname(p)) for p in CONFIGS}
    assert {'kitti', 'nuscenes', 'tiny'} <= dirs


def _base_model(path, tmp_path):
    from test_equity_configs import load_base
    return load_base(path, tmp_path).model


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_ssb_config_loads(path, tmp_path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['mmdet3d_equity'],
                                      allow_failed_imports=False)
    # the model is the stock one: no SSB type anywhere in it
    assert cfg.model == _base_model(path, tmp_path)
    assert 'SemanticScaleBalancedLoss' not in cfg.pretty_text
    hooks = [h for h in cfg.custom_hooks
             if h.type == 'SemanticScaleBalanceHook']
    assert len(hooks) == 1
    assert {'warmup_epochs', 'warmup_iters'} & set(hooks[0])
