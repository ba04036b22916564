"""The README's step-by-step tiny KITTI dataset (the command as the README
prints it) has a measurable rare slice: the shipped benchmark spec's
endpoint is fog Car on the val split."""
import json
import os.path as osp
import re
import shlex

import pytest
from _tool_helpers import REPO, call_tool

pytestmark = pytest.mark.slow


def test_readme_dataset_has_enough_fog_cars_in_val(tmp_path):
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    cmd, = re.findall(r'^python tools/create_tiny_dataset\.py kitti '
                      r'(?:.*\\\n)*.*$', readme, re.M)
    argv = shlex.split(cmd.replace('\\\n', ' '))[2:]
    out = argv.index('--out') + 1
    argv[out] = str(tmp_path / 'tiny_kitti')
    assert call_tool('create_tiny_dataset', argv + ['--quiet']) == 0
    root = argv[out]
    with open(osp.join(root, 'frame_modes.json')) as f:
        fm = json.load(f)
    fog_val = [s for s, split in fm['split'].items()
               if split == 'val' and fm['modes'][s] == 'fog']
    cars = 0
    for sid in fog_val:
        with open(osp.join(root, 'training', 'label_2',
                           f'{int(sid):06d}.txt')) as f:
            cars += sum(line.split()[0] == 'Car' for line in f)
    # an AP over 20+ objects moves in steps of at most 5 points
    assert len(fog_val) >= 5 and cars >= 20, (len(fog_val), cars)
