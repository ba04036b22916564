"""mmdet3d_equity.utils.fileio: atomic, umask-respecting, never a silent
overwrite."""
import json
import os
import stat

import numpy as np
import pytest

from mmdet3d_equity.utils.fileio import (
    OutputError,
    OutputExistsError,
    atomic_open,
    atomic_savez,
    atomic_write_json,
    atomic_write_text,
    check_output_dir,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_files_follow_the_umask(tmp_path, umask_022):
    p = tmp_path / 'a.json'
    atomic_write_json(str(p), {'x': 1})
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
    assert json.loads(p.read_text()) == {'x': 1}
    os.umask(0o077)
    q = tmp_path / 'b.txt'
    atomic_write_text(str(q), 'hi')
    assert stat.S_IMODE(os.stat(q).st_mode) == 0o600


def test_refuses_to_overwrite_unless_asked(tmp_path):
    p = tmp_path / 'a.txt'
    atomic_write_text(str(p), 'old')
    with pytest.raises(OutputExistsError,
                       match=r'a\.txt already exists; pass --overwrite'):
        atomic_write_text(str(p), 'new', overwrite=False)
    assert p.read_text() == 'old'
    atomic_write_text(str(p), 'new', overwrite=True)
    assert p.read_text() == 'new'


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    p = tmp_path / 'a.txt'
    atomic_write_text(str(p), 'old')
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_open(str(p), 'w') as f:
            f.write('half')
            raise RuntimeError('boom')
    assert p.read_text() == 'old'
    assert sorted(os.listdir(tmp_path)) == ['a.txt']


def test_nan_is_refused_in_json(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(str(tmp_path / 'a.json'), {'x': float('nan')})
    assert not (tmp_path / 'a.json').exists()


def test_savez_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="array 'a' has dtype object"):
        atomic_savez(str(tmp_path / 'a.npz'), a=np.array([{}], object))
    atomic_savez(str(tmp_path / 'b.npz'), a=np.arange(3), s=np.array(['x']))
    with np.load(tmp_path / 'b.npz', allow_pickle=False) as z:
        assert z['a'].tolist() == [0, 1, 2] and z['s'].tolist() == ['x']


@pytest.mark.skipif(os.geteuid() == 0, reason='root can write anywhere')
def test_unwritable_dir_is_named(tmp_path):
    d = tmp_path / 'ro'
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(OutputError, match='is not writable'):
            check_output_dir(str(d))
    finally:
        d.chmod(0o700)


def test_path_that_is_a_file_is_not_a_directory(tmp_path):
    f = tmp_path / 'f'
    f.write_text('x')
    with pytest.raises(OutputError, match='exists and is not a directory'):
        check_output_dir(str(f))


def test_dir_below_a_file_cannot_be_created(tmp_path):
    # (works as root too, unlike a read-only directory)
    f = tmp_path / 'f'
    f.write_text('x')
    with pytest.raises(OutputError, match='cannot create the output '
                       'directory .*; choose a writable location'):
        check_output_dir(str(f / 'sub'))


def test_a_full_disk_is_an_output_error_and_leaves_no_temp(tmp_path,
                                                           monkeypatch):
    import errno

    from mmdet3d_equity.utils import fileio
    from mmdet3d_equity.utils.errors import EquityError
    target = tmp_path / 'r.json'
    target.write_text('old')

    class Full:
        def __getattr__(self, name):
            return getattr(os, name)

        def replace(self, src, dst):
            raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(fileio, 'os', Full())
    with pytest.raises(fileio.OutputError) as e:
        fileio.atomic_write_json(str(target), {'a': 1})
    assert isinstance(e.value, EquityError)
    assert str(e.value) == (
        f'cannot write the output {target} (No space left on device): the '
        'disk is full: free space there or choose another location; nothing '
        'of it was kept, so the rerun starts clean')
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ['r.json'] and target.read_text() == 'old'
    # any other OSError is not a storage problem: it keeps its type
    assert fileio.storage_error('x', OSError(errno.EBADF, 'bad')) is None


def test_an_output_file_cannot_replace_a_directory(tmp_path):
    d = tmp_path / 'out.json'
    d.mkdir()
    for overwrite in (False, True):
        with pytest.raises(OutputError, match='is an existing directory, '
                           'which a file cannot replace'):
            atomic_write_json(str(d), {}, overwrite=overwrite)
    assert os.listdir(d) == []
