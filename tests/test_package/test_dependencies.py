"""scikit-learn is used through its public API only, within the range
requirements.txt pins (setup.py installs the same list)."""
import os
import os.path as osp
import re

from _tool_helpers import REPO

PRIVATE = re.compile(r'sklearn(?:\.\w+)*\._\w+|import\s+_\w+|'
                     r'\._validate_params\b|\._parameter_constraints\b')


def _sources():
    for top in ('mmdet3d_equity', 'equity_tiny_data', 'tools'):
        for root, _, files in os.walk(osp.join(REPO, top)):
            for f in files:
                if f.endswith('.py'):
                    yield osp.join(root, f)


def test_no_private_sklearn_names():
    found = []
    for path in _sources():
        with open(path, encoding='utf-8') as f:
            for i, line in enumerate(f, 1):
                if 'sklearn' in line or '_validate_params' in line or \
                        '_parameter_constraints' in line:
                    if PRIVATE.search(line):
                        found.append(f'{osp.relpath(path, REPO)}:{i}: '
                                     f'{line.strip()}')
    assert found == []


def test_installed_sklearn_is_in_the_pinned_range():
    import sklearn
    from packaging.requirements import Requirement
    from packaging.version import Version
    with open(osp.join(REPO, 'requirements.txt')) as f:
        reqs = [Requirement(line.split('#')[0].strip()) for line in f
                if line.split('#')[0].strip()]
    pin = next(r for r in reqs if r.name == 'scikit-learn')
    assert str(pin.specifier) == '<1.10,>=1.3'
    assert Version(sklearn.__version__) in pin.specifier
