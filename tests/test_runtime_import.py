"""custom_imports=['mmdet3d_equity'] imports what training needs only: not
the tiny-data generators, the scoring pipeline or the figures (a fresh
interpreter per check, so nothing else has imported them)."""
import json
import os
import subprocess
import sys

from test_tool_outputs import REPO

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
print(json.dumps(sorted(m for m in sys.modules if m in {names})))
'''


def _loaded(code):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_runtime_import_loads_no_generators_and_no_scoring_pipeline():
    assert _loaded(PROBE.format(names=repr(set(NOT_AT_RUNTIME)))) == []


def test_scoring_names_still_import_on_first_use():
    code = PROBE.format(names=repr(set(NOT_AT_RUNTIME))).replace(
        'print(', 'from mmdet3d_equity.scoring import compute_likelihoods, '
        'ScoringError\nassert callable(compute_likelihoods)\nprint(')
    assert _loaded(code) == ['mmdet3d_equity.scoring.clustering',
                             'mmdet3d_equity.scoring.dataset_source',
                             'mmdet3d_equity.scoring.pipeline']
