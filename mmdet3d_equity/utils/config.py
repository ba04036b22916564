"""Config loading shared by the command-line tools."""
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config, DictAction  # noqa: F401  (re-exported)

from .errors import ConfigError  # noqa: F401

#: the installed package's folder (mmdet3d_equity/)
PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_config(path: str, cfg_options: Optional[dict] = None,
                runner_options: bool = True) -> Config:
    """Load an MMEngine config like MMDetection3D's tools do: what every
    tool of the package (train, test, compute_likelihoods, score_split,
    semantic_scale, compare_arms) calls, so each reads a config and its
    ``--cfg-options`` the same way.

    ``path`` is a file, or ``mmdet3d::<relative path>`` for a stock config
    shipped in the mmdet3d wheel. Raises :class:`ConfigError` naming the
    problem when the file does not exist or does not parse, when a
    ``cfg_options`` key would not change what runs: not a Runner setting
    (:func:`~mmdet3d_equity.utils.config_checks.check_runner_options`; e.g.
    ``data_root``, a variable of the file whose value was substituted when
    it was parsed), or a setting another one overrides
    (:func:`~mmdet3d_equity.utils.config_checks.check_overrides_take_effect`)
    ; or when the model holds a loss that belongs elsewhere
    (:func:`~mmdet3d_equity.utils.config_checks.check_model_losses`).
    ``runner_options=False`` skips the first two checks (for a config that
    is not run, e.g. read for its values only).
    """
    from .config_checks import (
        check_model_losses,
        check_overrides_take_effect,
        check_runner_options,
    )
    if '::' not in path and not osp.isfile(path):
        raise ConfigError(
            f'config file not found: {path!r}. Give the path to an '
            f'MMDetection3D config (e.g. configs/tiny/'
            f'pointpillars_tiny-kitti-3class.py) or a stock one as '
            f"'mmdet3d::pointpillars/<name>.py'.")
    try:
        cfg = Config.fromfile(path)
    except FileNotFoundError as e:
        raise ConfigError(f'config {path!r} cannot be loaded: {e}') from e
    except SyntaxError as e:
        raise ConfigError(f'config {path!r} is not valid Python: {e}') from e
    if cfg_options:
        if runner_options:
            check_runner_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
        if runner_options:
            check_overrides_take_effect(cfg, cfg_options)
    check_model_losses(cfg)
    cfg.setdefault('default_scope', 'mmdet3d')
    return cfg


def resolve_work_dir(cfg: Config, config_path: str,
                     work_dir: Optional[str]) -> str:
    """--work-dir wins, then cfg.work_dir, then ./work_dirs/<config name>."""
    if work_dir is not None:
        return work_dir
    if cfg.get('work_dir', None) is not None:
        return cfg.work_dir
    name = osp.splitext(osp.basename(config_path.split('::')[-1]))[0]
    return osp.join('./work_dirs', name)


def ensure_checkpoint(path: str) -> str:
    """Refuse a checkpoint argument that is neither a file nor a URL."""
    if path.startswith(('http://', 'https://')) or osp.isfile(path):
        return path
    raise ConfigError(
        f'checkpoint not found: {path!r}. Give the .pth file written by '
        f'tools/train.py (e.g. work_dirs/<config>/epoch_1.pth).')


def parse_runner_args(parser, argv=None):
    """Add the arguments every MMDetection3D runner tool takes
    (--cfg-options, --launcher, --local_rank), parse, and export LOCAL_RANK
    for the launcher as MMDetection3D's tools do."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (xxx=yyy)')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def package_config(name: str) -> str:
    """The path of a config shipped with the package (``configs/<name>`` of
    the source tree, installed as ``mmdet3d_equity/.mim/configs/<name>``;
    the same layout MMDetection3D uses for its own configs), e.g.
    ``package_config('tiny/pointpillars_tiny-kitti-3class.py')``. The
    ``_base_`` references of those configs are relative, so they resolve
    inside the installed tree."""
    path = osp.join(PACKAGE_DIR, '.mim', 'configs', name)
    if not osp.exists(path):
        raise ConfigError(
            f'config {name!r} is not shipped with this installation of '
            f'mmdet3d-equity ({path} missing); reinstall the package '
            '(pip install mmdet3d-equity, or `pip install -e .` in a '
            'checkout), or pass the config by its path')
    return path
