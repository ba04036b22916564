"""custom_imports=['mmdet3d_equity'] imports what training needs only: not
the tiny-data generators, the scoring pipeline or the figures (a fresh
interpreter, so nothing else has imported them)."""
import json
import os
import subprocess
import sys

import pytest
from _tool_helpers import REPO

NOT_AT_RUNTIME = ('equity_tiny_data', 'mmdet3d_equity.scoring.pipeline',
                  'mmdet3d_equity.scoring.embedders',
                  'mmdet3d_equity.scoring.clustering',
                  'mmdet3d_equity.scoring.dataset_source',
                  'mmdet3d_equity.visualization', 'mmdet3d_equity.apis')

PROBE = '''
import json, sys
from mmengine.utils import import_modules_from_strings
import_modules_from_strings(imports=['mmdet3d_equity'],
                            allow_failed_imports=False)
from mmdet3d.registry import DATASETS, HOOKS, MODELS
assert DATASETS.get('EquityDataset') and HOOKS.get('EquityHook')
assert MODELS.get('GeneralizedFocalLoss')
names = {names}
print('RUNTIME ' + json.dumps(sorted(m for m in sys.modules if m in names)))
from mmdet3d_equity.scoring import compute_likelihoods, ScoringError
assert callable(compute_likelihoods)
print('SCORING ' + json.dumps(sorted(m for m in sys.modules if m in names)))
'''


@pytest.fixture(scope='module')
def loaded():
    """One fresh interpreter: which of NOT_AT_RUNTIME are loaded after the
    runtime import ('RUNTIME'), then after importing the scoring names
    ('SCORING')."""
    code = PROBE.format(names=repr(set(NOT_AT_RUNTIME)))
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return {line.split(' ', 1)[0]: json.loads(line.split(' ', 1)[1])
            for line in r.stdout.splitlines()
            if line.startswith(('RUNTIME ', 'SCORING '))}


@pytest.mark.slow
def test_runtime_import_loads_no_generators_and_no_scoring_pipeline(loaded):
    assert loaded['RUNTIME'] == []


@pytest.mark.slow
def test_scoring_names_still_import_on_first_use(loaded):
    assert loaded['SCORING'] == ['mmdet3d_equity.scoring.clustering',
                                 'mmdet3d_equity.scoring.dataset_source',
                                 'mmdet3d_equity.scoring.pipeline']


def test_lazy_scoring_names_are_their_submodules_objects():
    """The in-process half (the fresh-interpreter probes above are slow):
    each name mmdet3d_equity.scoring loads on first use is its submodule's
    object, dir() lists it, and an unknown name is an AttributeError."""
    import importlib

    import mmdet3d_equity.scoring as scoring
    for name, module in scoring._LAZY.items():
        sub = importlib.import_module(f'mmdet3d_equity.scoring.{module}')
        assert scoring.__getattr__(name) is getattr(sub, name), name
        assert getattr(scoring, name) is getattr(sub, name), name
    assert set(scoring._LAZY) <= set(dir(scoring))
    with pytest.raises(AttributeError) as e:
        scoring.no_such_name
    assert str(e.value) == \
        "module 'mmdet3d_equity.scoring' has no attribute 'no_such_name'"
