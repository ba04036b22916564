"""The SSB configs load through mmdet3d:: inheritance and wrap the stock
classification loss unchanged."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*', '*ssb*.py')))


def test_there_are_kitti_nuscenes_and_tiny_ssb_configs():
    dirs = {osp.basename(osp.dirname(p)) for p in CONFIGS}
    assert {'kitti', 'nuscenes', 'tiny'} <= dirs


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_ssb_config_loads(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['mmdet3d_equity'],
                                      allow_failed_imports=False)
    head = cfg.model.get('pts_bbox_head', None) or cfg.model.bbox_head
    lc = head.loss_cls
    assert lc.type == 'SemanticScaleBalancedLoss'
    assert set(lc) == {'type', 'loss'}
    assert lc.loss.type in ('mmdet.FocalLoss', 'mmdet.GaussianFocalLoss')
    hooks = [h for h in cfg.custom_hooks
             if h.type == 'SemanticScaleBalanceHook']
    assert len(hooks) == 1
