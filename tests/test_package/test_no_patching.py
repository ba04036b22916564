"""Importing mmdet3d_equity changes no class and no module of the stack
(mmdet3d, mmdet, mmengine, mmcv): checked in a fresh interpreter by
comparing every stack module in sys.modules, every module attribute and
every class attribute before and after the import."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# compat.py (the stack fixes, each naming the release that ends it)
# registers MMEngine's local checkpoint scheme again through MMEngine's public
# CheckpointLoader.register_scheme, which rebuilds this class-level registry.
COMPAT = {"mmengine.runner.checkpoint.CheckpointLoader: ['_schemes']"}

SCRIPT = r'''
import json, sys
STACK = ('mmdet3d', 'mmdet', 'mmengine', 'mmcv')
# import the whole stack first (what a training run has loaded anyway)
import mmengine.runner, mmengine.hooks, mmengine.dataset  # noqa
from mmdet3d.utils import register_all_modules
register_all_modules(init_default_scope=False)
import mmdet3d.models, mmdet3d.datasets, mmdet3d.engine  # noqa
import mmdet3d.evaluation, mmdet3d.structures, mmdet3d.visualization  # noqa
import mmdet.models, mmdet.datasets  # noqa
from mmdet3d.models.dense_heads import (Anchor3DHead, AnchorFreeMono3DHead,
                                        CenterHead, FCOSMono3DHead, PGDHead,
                                        SMOKEMono3DHead)
HEADS = (Anchor3DHead, AnchorFreeMono3DHead, CenterHead, FCOSMono3DHead,
         PGDHead, SMOKEMono3DHead)
inits = {h.__name__: h.__dict__.get('__init__') for h in HEADS}
from mmengine.runner.checkpoint import CheckpointLoader
schemes = dict(CheckpointLoader._schemes)


def stack(name):
    return name.split('.')[0] in STACK


def snapshot():
    modules = {n: m for n, m in sys.modules.items() if stack(n)}
    attrs, classes = {}, {}
    for name, m in modules.items():
        try:
            d = dict(vars(m))
        except TypeError:
            continue
        attrs[name] = d
        for k, v in d.items():
            if isinstance(v, type) and getattr(v, '__module__', '') == name:
                classes[f'{name}.{k}'] = (v, dict(vars(v)))
    return modules, attrs, classes


modules, attrs, classes = snapshot()
import mmdet3d_equity  # noqa: E402
report = dict(replaced_modules=[], changed_attrs=[], changed_classes=[],
              head_inits=[])
for name, m in modules.items():
    if sys.modules.get(name) is not m:
        report['replaced_modules'].append(name)
for name, before in attrs.items():
    now = vars(modules[name])
    for k, v in before.items():
        if k not in now or now[k] is not v:
            report['changed_attrs'].append(f'{name}.{k}')
    for k in set(now) - set(before):
        v = now[k]
        # a submodule imported for the first time is not a change
        if (type(v).__name__ == 'module' and getattr(v, '__file__', None)
                and v.__name__ == f'{name}.{k}'):
            continue
        report['changed_attrs'].append(f'{name}.{k} (added)')
for qual, (cls, before) in classes.items():
    now = vars(cls)
    diff = sorted(k for k in set(before) | set(now)
                  if k not in now or k not in before
                  or now[k] is not before[k])
    if diff:
        report['changed_classes'].append(f'{qual}: {diff}')
for h in HEADS:
    if h.__dict__.get('__init__') is not inits[h.__name__]:
        report['head_inits'].append(h.__name__)
report['schemes_changed'] = sorted(
    k for k in set(schemes) | set(CheckpointLoader._schemes)
    if schemes.get(k) is not CheckpointLoader._schemes.get(k))
report['checked'] = dict(modules=len(modules), classes=len(classes))
print('REPORT' + json.dumps(report))
'''


@pytest.mark.slow
def test_import_changes_no_class_or_module_of_the_stack(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    res = subprocess.run([sys.executable, '-c', SCRIPT], cwd=str(tmp_path),
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith('REPORT')]
    report = json.loads(line[-1][len('REPORT'):])
    # the comparison really covered the stack
    assert report['checked']['modules'] > 500
    assert report['checked']['classes'] > 1000
    assert report['head_inits'] == []
    assert report['replaced_modules'] == []
    assert [c for c in report['changed_classes'] if c not in COMPAT] == []
    # the compat fix only replaced the loader of local files ('' prefix)
    assert report['schemes_changed'] == ['']
    # the CPU rotated IoU of KITTI evaluation is provided by KittiCPUMetric
    # while it evaluates (a config names it), never on import
    assert report['changed_attrs'] == []
