"""The slice-file reader on any input: any bytes and any JSON value give a
valid slice mapping or a SliceError (an EquityError) naming the file, never
another exception."""
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmdet3d_equity.evaluation.slice_sources import (
    read_slice_file,
    write_slice_file,
)
from mmdet3d_equity.utils.errors import EquityError, SliceError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() |
    st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
#: JSON objects shaped like slice files, so the deeper checks are reached
SLICE_LIKE = st.fixed_dictionaries({}, optional={
    'format': st.sampled_from(['mmdet3d_equity.slices', 'x']) | JSON,
    'format_version': st.integers(0, 3) | JSON,
    'names': st.lists(st.text(max_size=6), max_size=3) | JSON,
    'slices': st.dictionaries(st.text(max_size=6), st.lists(
        st.text(max_size=6), max_size=3) | JSON, max_size=3) | JSON,
    'modes': st.dictionaries(st.text(max_size=6), st.text(max_size=6) |
                             JSON, max_size=3) | JSON,
})
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(path):
    try:
        slices, names = read_slice_file(str(path))
    except SliceError as e:
        assert isinstance(e, EquityError)
        assert str(path) in str(e)
        return
    assert isinstance(slices, dict) and isinstance(names, list)
    assert set(names) <= set(slices)
    for name, ids in slices.items():
        assert isinstance(name, str)
        assert all(isinstance(i, str) for i in ids)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_any_bytes(tmp_path, data):
    path = tmp_path / 'slices.json'
    path.write_bytes(data)
    _check(path)


@SETTINGS
@given(value=JSON | SLICE_LIKE)
def test_any_json_value(tmp_path, value):
    path = tmp_path / 'slices.json'
    path.write_text(json.dumps(value))
    _check(path)


def test_a_written_file_reads_back(tmp_path):
    path = str(tmp_path / 's.json')
    write_slice_file(path, {'1': ['fog'], '2': ['day', 'fog']},
                     names=['day', 'fog'])
    slices, names = read_slice_file(path)
    assert slices == {'day': {'2'}, 'fog': {'1', '2'}} and \
        names == ['day', 'fog']
