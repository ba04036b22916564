"""The scorer-file reader (``load_scorer``, what tools/score_split.py reads)
on any input: any bytes, and any JSON metadata in an otherwise well-formed
archive, give the scorers or a ScoringError (an EquityError) naming the
file, never another exception."""
import io
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmdet3d_equity.scoring.clustering import (
    SCORER_FORMAT,
    SCORER_FORMAT_VERSION,
    load_scorer,
)
from mmdet3d_equity.utils.errors import EquityError, ScoringError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() |
    st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) |
    st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10)
SCORER = st.fixed_dictionaries({}, optional={
    'name': JSON | st.text(max_size=4), 'kind': JSON | st.sampled_from(
        ['kmeans', 'gmm', 'dbscan', 'density']),
    'likelihood_def': JSON | st.sampled_from(['largest', 'density']),
    'settings': JSON})
META = st.fixed_dictionaries({}, optional={
    'format': st.just(SCORER_FORMAT) | JSON,
    'format_version': st.just(SCORER_FORMAT_VERSION) | JSON,
    'scorers': st.lists(SCORER, max_size=2) | JSON})
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(path):
    try:
        scorers, meta = load_scorer(str(path))
    except ScoringError as e:
        assert isinstance(e, EquityError) and str(path) in str(e)
        return
    assert isinstance(meta, dict) and isinstance(scorers, dict)


@SETTINGS
@given(data=st.binary(max_size=300))
def test_any_bytes(tmp_path, data):
    path = tmp_path / 'scorer.npz'
    path.write_bytes(data)
    _check(path)


@SETTINGS
@given(meta=META | JSON, arrays=st.booleans())
def test_any_metadata(tmp_path, meta, arrays):
    buf = io.BytesIO()
    extra = dict(s0__train_z=np.zeros((2, 2), np.float32),
                 s0__train_raw=np.zeros(2, np.int64)) if arrays else {}
    np.savez(buf, meta=np.asarray(json.dumps(meta)), **extra)
    path = tmp_path / 'scorer.npz'
    path.write_bytes(buf.getvalue())
    _check(path)
