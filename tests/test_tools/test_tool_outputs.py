"""What every tool does with its outputs: a refused run leaves every
existing file as it was (log files included), and an output path that
cannot be written is refused before any work, with the problem and the fix
(tools called in-process; none of these runs reaches the data)."""
import os
import os.path as osp

import pytest
from _tool_helpers import KITTI_CFG, REPO, exit_code, snapshot, tool  # noqa


@pytest.fixture
def a_file(tmp_path):
    """A regular file: no directory can be created below it (a read-only
    directory would not do: the tests run as root, who writes anywhere)."""
    f = tmp_path / 'a_file'
    f.write_text('x')
    return f


@pytest.mark.parametrize('existing', [
    ('lik.npz', 'lik.csv', 'lik_summary.json', 'lik.log'),
    ('lik.csv', ),
    ('lik_figures/projection.png', ),
])
def test_compute_likelihoods_refused_rerun_keeps_every_file(
        tmp_path, capsys, existing):
    out_dir = tmp_path / 'out'
    for name in existing:
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_text(f'earlier {name}\n')
    before = snapshot(out_dir)
    rc = tool('compute_likelihoods').main(
        [KITTI_CFG, '--out', str(out_dir / 'lik.npz')])
    assert rc == 2
    err = capsys.readouterr().err
    assert 'compute_likelihoods.py: error: output(s) [' in err
    assert 'already exist; pass --overwrite (overwrite=True) to replace ' \
        'them, or choose another --out' in err
    assert snapshot(out_dir) == before


def test_compute_likelihoods_checks_outputs_before_work(tmp_path, a_file,
                                                        capsys):
    cl = tool('compute_likelihoods')
    assert cl.main([KITTI_CFG, '--out', str(a_file / 'lik.npz')]) == 2
    assert f'compute_likelihoods.py: error: the output path {a_file} exists ' \
        'and is not a directory; choose another location' in \
        capsys.readouterr().err
    assert cl.main([KITTI_CFG, '--out', str(a_file / 'sub' / 'lik.npz')]) \
        == 2
    assert f'compute_likelihoods.py: error: cannot create the output ' \
        f'directory {a_file}/sub (' in capsys.readouterr().err
    assert cl.main([KITTI_CFG, '--out', str(tmp_path / 'lik.npz'),
                    '--cache-dir', str(a_file / 'cache')]) == 2
    assert 'cannot create the embedding cache directory' in \
        capsys.readouterr().err
    assert cl.main([KITTI_CFG, '--out', str(tmp_path / 'lik.pkl')]) == 2
    assert '--out must end with .npz (likelihood files are NumPy ' \
        "archives), got '" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ['a_file']


def test_semantic_scale_checks_out_dir_before_work(tmp_path, a_file,
                                                   capsys):
    rc = exit_code(tool('semantic_scale').main,
                   [KITTI_CFG, 'no_such.pth', '--out-dir', str(a_file / 'o')])
    assert rc == 2
    err = capsys.readouterr().err
    assert f'semantic_scale.py: error: cannot create the output directory ' \
        f'{a_file}/o' in err
    for name in ('count_vs_scale.png', 'semantic_scale.json'):
        d = tmp_path / name.split('.')[0]
        d.mkdir()
        (d / name).write_text('earlier')
        before = snapshot(d)
        rc = exit_code(tool('semantic_scale').main,
                       [KITTI_CFG, 'no_such.pth', '--out-dir', str(d)])
        assert rc == 2 and '--overwrite' in capsys.readouterr().err
        assert snapshot(d) == before


def test_create_tiny_dataset_checks_the_parent_before_work(a_file, capsys):
    rc = exit_code(tool('create_tiny_dataset').main,
                   ['kitti', '--out', str(a_file / 'tiny')])
    assert rc == 2
    assert f'create_tiny_dataset.py: error: the parent path {a_file} exists ' \
        'and is not a directory; choose another location' in \
        capsys.readouterr().err
    rc = exit_code(tool('create_tiny_dataset').main,
                   ['kitti', '--out', str(a_file / 'sub' / 'tiny')])
    assert rc == 2
    err = capsys.readouterr().err
    assert f'create_tiny_dataset.py: error: cannot create the parent ' \
        f'directory {a_file}/sub (' in err
    assert 'choose a writable location' in err


def test_train_and_test_check_outputs_before_the_runner(tmp_path, a_file,
                                                        capsys):
    rc = exit_code(tool('train').main,
                   [KITTI_CFG, '--work-dir', str(a_file / 'work')])
    assert rc == 2
    assert f'train.py: error: cannot create the work directory ' \
        f'{a_file}/work' in capsys.readouterr().err
    # --out is written after the whole test: checked before it starts
    ckpt = tmp_path / 'epoch_1.pth'
    ckpt.write_bytes(b'')
    rc = exit_code(tool('test').main,
                   [KITTI_CFG, str(ckpt), '--work-dir', str(tmp_path / 'w'),
                    '--out', str(a_file / 'sub' / 'preds.pkl')])
    assert rc == 2
    assert f'test.py: error: cannot create the --out directory ' \
        f'{a_file}/sub (' in capsys.readouterr().err
    assert not (tmp_path / 'w').exists()


def test_refused_train_leaves_the_work_dir_as_it_was(tmp_path, capsys):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'last_checkpoint').write_text('epoch_1.pth')
    (work / '20240101_000000').mkdir()
    (work / '20240101_000000' / 'run.log').write_text('earlier log')
    before = snapshot(work)
    rc = exit_code(tool('train').main,
                   [KITTI_CFG, '--work-dir', str(work), '--resume',
                    str(tmp_path / 'nope.pth')])
    assert rc == 2
    assert "--resume checkpoint not found: '" in capsys.readouterr().err
    assert snapshot(work) == before
    assert sorted(os.listdir(work)) == ['20240101_000000', 'last_checkpoint']


def test_tiny_dataset_follows_the_umask(tiny_kitti_root):
    """The generator builds in a temporary folder (mkdtemp: 0700) and
    renames it into place: the result has ordinary permissions."""
    umask = os.umask(0)
    os.umask(umask)
    for rel, mode in (('', 0o777), ('training', 0o777),
                      ('frame_modes.json', 0o666),
                      ('kitti_infos_train.pkl', 0o666),
                      ('training/velodyne/000000.bin', 0o666)):
        path = osp.join(tiny_kitti_root, rel)
        assert os.stat(path).st_mode & 0o777 == mode & ~umask, rel


@pytest.mark.parametrize('args,message', [
    (['--eta', '-1'], 'compute_likelihoods.py: error: --eta/--gamma (the W(p) '
     'of the CSV weight column and figures): equity_weight: eta must be a '
     'finite number >= 0, got -1.0\n'),
    (['--clusterer', 'hdbscan', '--save-scorer'],
     "compute_likelihoods.py: error: --save-scorer / --score-split: "
     "scikit-learn's HDBSCAN cannot place new samples in a fitted "
     'clustering; use --clusterer kmeans/gmm/dbscan or --likelihood '
     'density\n'),
])
def test_compute_likelihoods_bad_options_open_no_log(tmp_path, capsys, args,
                                                     message):
    """Options are checked before the log file is opened: a refused run
    writes nothing, and an earlier log (rerun with --overwrite) keeps its
    text."""
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    rc = tool('compute_likelihoods').main(
        [KITTI_CFG, '--out', str(out_dir / 'lik.npz')] + args)
    assert rc == 2 and capsys.readouterr().err == message
    assert os.listdir(out_dir) == []
    (out_dir / 'lik.log').write_text('earlier run\n')
    before = snapshot(out_dir)
    rc = tool('compute_likelihoods').main(
        [KITTI_CFG, '--out', str(out_dir / 'lik.npz'), '--overwrite'] + args)
    assert rc == 2 and capsys.readouterr().err == message
    assert snapshot(out_dir) == before


@pytest.mark.parametrize('name', ['benchmark_scoring', 'benchmark_ssb',
                                  'benchmark_embedding'])
def test_benchmark_scripts_refuse_an_existing_json_before_measuring(
        tmp_path, a_file, capsys, name):
    existing = tmp_path / 'numbers.json'
    existing.write_text('earlier numbers\n')
    rc = exit_code(tool(name).main, ['--json', str(existing)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.endswith(
        f'error: {existing} already exists; pass --overwrite (overwrite=True)'
        ' to replace it, or choose another output path\n'), err
    assert existing.read_text() == 'earlier numbers\n'
    rc = exit_code(tool(name).main, ['--json', str(a_file / 'n.json')])
    assert rc == 2
    assert f'error: the --json path {a_file} exists and is not a ' \
        'directory; choose another location' in capsys.readouterr().err


def test_compute_likelihoods_out_that_is_a_directory_is_refused_first(
        tmp_path, capsys, monkeypatch):
    """--out naming an existing directory used to fail in os.replace after
    all the work (and leave a log behind); --overwrite cannot help, so the
    message does not suggest it."""
    from _tool_helpers import fresh_global_instances
    # stderr is compared whole: no message of mmengine's config loading
    # (it logs the substitution of a set EQUITY_TINY_KITTI) and no logger
    # of an earlier test in this process
    monkeypatch.delenv('EQUITY_TINY_KITTI', raising=False)
    out = tmp_path / 'lik.npz'
    out.mkdir()
    for extra in ([], ['--overwrite']):
        with fresh_global_instances():
            rc = tool('compute_likelihoods').main(
                [KITTI_CFG, '--out', str(out)] + extra)
        assert rc == 2
        err = capsys.readouterr().err
        assert err == (f'compute_likelihoods.py: error: the --out path {out} '
                       'is an existing directory, which a file cannot '
                       'replace; choose another path (or remove the '
                       'directory)\n')
        assert sorted(p.name for p in tmp_path.iterdir()) == ['lik.npz']


class _DiskFull:
    """fileio's ``os`` and ``tempfile`` as they are, except that writing
    into a temporary file whose name starts with ``prefix`` fails with
    ENOSPC (what a full disk gives)."""

    def __init__(self, prefix):
        import tempfile
        self.prefix, self.tempfile, self.last = prefix, tempfile, None
        self.os = self._OS(self)

    class _OS:
        def __init__(self, owner):
            self.owner = owner

        def __getattr__(self, name):
            return getattr(os, name)

        def fdopen(self, fd, mode, **kwargs):
            f = os.fdopen(fd, mode, **kwargs)
            if not (self.owner.last or '').startswith(self.owner.prefix):
                return f
            import errno

            class Failing:
                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    f.close()
                    return False

                def write(self, data):
                    raise OSError(errno.ENOSPC, 'No space left on device')

            return Failing()

    def mkstemp(self, prefix='', **kwargs):
        self.last = prefix
        return self.tempfile.mkstemp(prefix=prefix, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tempfile, name)


def _score(root, out, *extra):
    from _tool_helpers import call_tool
    return call_tool('compute_likelihoods', [
        KITTI_CFG, '--out', str(out), '--no-figures', '--input-size', '32',
        '--workers', '0', '--no-cache'] + list(extra),
        env={'EQUITY_TINY_KITTI': root})


def test_disk_full_while_writing_is_one_line_and_the_rerun_is_not_blocked(
        tiny_kitti_root, tmp_path, capsys, monkeypatch):
    from mmdet3d_equity.utils import fileio
    full = _DiskFull('.lik.csv')
    with monkeypatch.context() as mp:
        mp.setattr(fileio, 'os', full.os)
        mp.setattr(fileio, 'tempfile', full)
        assert _score(tiny_kitti_root, tmp_path / 'lik.npz') == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f'compute_likelihoods.py: error: cannot write the output '
        f'{tmp_path}/lik.csv (No space left on device): the disk is full: '
        'free space there or choose another location; nothing of it was '
        'kept, so the rerun starts clean')
    assert not any('Traceback' in line for line in err)
    # the likelihood file written before the CSV is removed with it; the
    # log stays, and no temporary file is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ['lik.log']
    # the rerun (no --overwrite) is not blocked by the failed run's log
    assert _score(tiny_kitti_root, tmp_path / 'lik.npz') == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'lik.csv', 'lik.log', 'lik.npz', 'lik_summary.json']
    assert 'likelihood file written' in (tmp_path / 'lik.log').read_text()


def test_disk_full_while_logging_is_one_line(tiny_kitti_root, tmp_path,
                                             capsys, monkeypatch):
    import errno
    import logging
    flush = logging.StreamHandler.flush

    def full(self):
        if isinstance(self, logging.FileHandler) and \
                self.baseFilename.endswith('lik.log'):
            raise OSError(errno.ENOSPC, 'No space left on device')
        return flush(self)

    with monkeypatch.context() as mp:
        mp.setattr(logging.StreamHandler, 'flush', full)
        assert _score(tiny_kitti_root, tmp_path / 'lik.npz') == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith('compute_likelihoods.py: error: ')
    assert (f'cannot write the log file {tmp_path}/lik.log (No space left '
            'on device): the disk is full: free space there or choose '
            'another location; the log stops there and the rerun replaces '
            'it') in line
    assert 'Traceback' not in err and '--- Logging error ---' not in err
    assert not (tmp_path / 'lik.npz').exists()
    assert _score(tiny_kitti_root, tmp_path / 'lik.npz') == 0
