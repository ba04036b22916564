"""Writing the project's output files: one helper for every file we write.

Every output (likelihood files, CSV/JSON reports, figures, caches) is

* written atomically: to a temporary file in the target directory, then
  renamed over the target, so a reader never sees half a file and an
  interrupted write leaves the old file as it was;
* created with the permissions of an ordinary new file (``0o666`` minus the
  process umask, usually ``0o644``), not the ``0o600`` of the temporary
  file, so teammates can read shared outputs;
* never put over an existing file unless the caller passes
  ``overwrite=True`` (:class:`OutputExistsError` otherwise).

:func:`check_output_dir` checks that a directory can be written *before*
any long work starts.
"""
import contextlib
import errno
import io
import json
import os
import os.path as osp
import tempfile
import threading
from typing import Iterator, Optional

from .errors import OutputError, OutputExistsError  # noqa: F401

__all__ = [
    'OutputError', 'OutputExistsError', 'check_output_dir',
    'check_output_file', 'check_not_directory', 'storage_error',
    'atomic_open',
    'atomic_write_bytes', 'atomic_write_text', 'atomic_write_json',
    'atomic_savez', 'atomic_savefig', 'new_file_mode', 'new_dir_mode'
]

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    with _UMASK_LOCK:
        umask = os.umask(0)
        os.umask(umask)
    return umask


def new_file_mode() -> int:
    """Permission bits of a newly created regular file under the umask."""
    return 0o666 & ~_umask()


def new_dir_mode() -> int:
    """Permission bits of a newly created directory under the umask (for
    directories made with ``tempfile.mkdtemp``, which uses ``0o700``)."""
    return 0o777 & ~_umask()


def check_output_dir(directory: str, what: str = 'output') -> str:
    """Create ``directory`` if needed and check that files can be created
    in it; raise :class:`OutputError` naming it and the fix otherwise.
    Returns the absolute path."""
    directory = osp.abspath(directory or '.')
    if osp.exists(directory) and not osp.isdir(directory):
        raise OutputError(f'the {what} path {directory} exists and is not a '
                          'directory; choose another location')
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise OutputError(
            f'cannot create the {what} directory {directory} '
            f'({e.strerror or e}); choose a writable location') from e
    try:
        fd, probe = tempfile.mkstemp(prefix='.write_check_', dir=directory)
    except OSError as e:
        raise OutputError(
            f'the {what} directory {directory} is not writable '
            f'({e.strerror or e}); fix its permissions or choose another '
            'location') from e
    os.close(fd)
    os.remove(probe)
    return directory


def check_output_file(path: str, overwrite: bool = False,
                      what: str = 'output') -> str:
    """Before any work: refuse an existing ``path`` unless ``overwrite``
    (:class:`OutputExistsError`), and check that its directory can be
    written (:func:`check_output_dir`). Returns the absolute path."""
    _refuse_existing(path, overwrite)
    check_output_dir(osp.dirname(osp.abspath(path)), what)
    return osp.abspath(path)


#: errors of the storage (not of the program): reported as OutputError
STORAGE_ERRNOS = {errno.ENOSPC: 'the disk is full: free space there or '
                  'choose another location',
                  errno.EDQUOT: 'the disk quota is exceeded: free space or '
                  'choose another location',
                  errno.EROFS: 'the file system is read-only: choose a '
                  'writable location',
                  errno.EACCES: 'permission denied: fix the permissions or '
                  'choose another location',
                  errno.EPERM: 'operation not permitted: fix the '
                  'permissions or choose another location',
                  errno.EIO: 'input/output error of the storage: check the '
                  'disk, or choose another location',
                  errno.EFBIG: 'the file is too large for this file '
                  'system: choose another location'}


def storage_error(path: str, error: OSError,
                  what: str = 'output') -> Optional[OutputError]:
    """An :class:`OutputError` naming ``path`` and the fix for an OSError
    of the storage (disk full, read-only, permissions; see
    :data:`STORAGE_ERRNOS`); None for any other error."""
    if isinstance(error, OutputError):
        return None
    fix = STORAGE_ERRNOS.get(getattr(error, 'errno', None))
    if fix is None:
        return None
    kept = ('the log stops there and the rerun replaces it'
            if what == 'log file' else
            'nothing of it was kept, so the rerun starts clean')
    return OutputError(f'cannot write the {what} {path} '
                       f'({error.strerror or error}): {fix}; {kept}')


def check_not_directory(path: str, what: str = 'output') -> None:
    """Refuse an output file path that is an existing directory (no
    overwrite can replace a directory by a file)."""
    if osp.isdir(path):
        raise OutputError(
            f'the {what} path {path} is an existing directory, which a file '
            'cannot replace; choose another path (or remove the '
            'directory)')


def _refuse_existing(path: str, overwrite: bool) -> None:
    check_not_directory(path)
    if not overwrite and osp.lexists(path):
        raise OutputExistsError(
            f'{path} already exists; pass --overwrite (overwrite=True) to '
            'replace it, or choose another output path')


@contextlib.contextmanager
def atomic_open(path: str, mode: str = 'wb', overwrite: bool = True,
                encoding: Optional[str] = None) -> Iterator:
    """Open a temporary file next to ``path``; on a clean exit it gets the
    umask's permissions and replaces ``path``; on an error it is removed and
    ``path`` is left as it was."""
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got "
                         f'{mode!r}')
    _refuse_existing(path, overwrite)
    directory = check_output_dir(osp.dirname(osp.abspath(path)))
    try:
        fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.',
                                   suffix='.tmp', dir=directory)
    except OSError as e:
        err = storage_error(path, e)
        if err is None:
            raise
        raise err from e
    try:
        kwargs = {} if mode == 'wb' else dict(
            encoding=encoding or 'utf-8', newline='')
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        os.chmod(tmp, new_file_mode())
        _refuse_existing(path, overwrite)  # created meanwhile?
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        err = storage_error(path, e) if isinstance(e, OSError) else None
        if err is None:
            raise
        raise err from e


def atomic_write_bytes(path: str, data: bytes, overwrite: bool = True
                       ) -> str:
    with atomic_open(path, 'wb', overwrite) as f:
        f.write(data)
    return path


def atomic_write_text(path: str, text: str, overwrite: bool = True) -> str:
    with atomic_open(path, 'w', overwrite) as f:
        f.write(text)
    return path


def atomic_write_json(path: str, obj, overwrite: bool = True,
                      indent: Optional[int] = 1,
                      sort_keys: bool = False) -> str:
    """JSON with ``allow_nan=False``: NaN/inf are not JSON; give None."""
    text = json.dumps(obj, indent=indent, allow_nan=False,
                      sort_keys=sort_keys) + '\n'
    return atomic_write_text(path, text, overwrite)


def atomic_savez(path: str, overwrite: bool = True, compressed: bool = False,
                 **arrays) -> str:
    """``numpy.savez`` (no object arrays: they would need pickle to load)."""
    import numpy as np
    for k, v in arrays.items():
        if np.asarray(v).dtype == object:
            raise TypeError(f'atomic_savez: array {k!r} has dtype object, '
                            'which can only be read back with pickle; '
                            'store strings as a str array or JSON')
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue(), overwrite)


def atomic_savefig(fig, path: str, overwrite: bool = True, **kwargs) -> str:
    """``fig.savefig`` into ``path`` atomically (format from the suffix)."""
    fmt = kwargs.pop('format', None) or osp.splitext(path)[1].lstrip('.') \
        or 'png'
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **kwargs)
    return atomic_write_bytes(path, buf.getvalue(), overwrite)
