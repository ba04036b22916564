"""Config snippets the README gives: TensorBoard beside the local
backend (a list entry --cfg-options cannot append)."""
import os.path as osp
import re

from _tool_helpers import REPO
from mmengine.config import Config


def test_tensorboard_snippet_adds_the_backend_and_keeps_the_visualizer(
        tmp_path):
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    snippet, = re.findall(r'```python\n(visualizer = dict\(vis_backends=.*?)'
                          r'```', readme, re.S)
    cfg_file = tmp_path / 'with_tensorboard.py'
    base = osp.join(REPO, 'configs', 'tiny',
                    'pointpillars_tiny-kitti-3class.py')
    cfg_file.write_text(f'_base_ = [{base!r}]\n{snippet}')
    cfg = Config.fromfile(str(cfg_file))
    stock = Config.fromfile(base)
    assert [b['type'] for b in cfg.visualizer.vis_backends] == [
        'LocalVisBackend', 'TensorboardVisBackend']
    assert cfg.visualizer.type == stock.visualizer.type
    assert cfg.visualizer.name == stock.visualizer.name
