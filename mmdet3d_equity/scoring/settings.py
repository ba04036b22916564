"""The settings of a scoring run: one dataclass, validated once.

:class:`ScoringSettings` holds every option of
:func:`~.pipeline.compute_likelihoods` (``tools/compute_likelihoods.py``
builds one from its arguments); its checks run when it is made, before any
data is read, and raise :class:`ScoringError` naming the option and the
fix. Embedders take their options either from the fields they name in
``settings_fields`` (``backbone``, ``checkpoint``, ... of the shipped
ones) or from a config dict: ``embedder=dict(type=NAME, **options)``.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from ..utils.errors import ScoringError
from .cameras import CAMERA_AGGREGATIONS
from .clustering import (
    DEFAULT_CLUSTERER,
    DEFAULT_LIKELIHOOD,
    DEFAULT_REDUCER,
    get_clusterer,
    validate_scoring_params,
)
from .registry import EMBEDDERS

#: the splits other than train that can be scored against the training fit
EVAL_SPLITS = ('val', 'test')
#: settings fields that belong to one embedder (see ``settings_fields``)
EMBEDDER_FIELDS = ('backbone', 'checkpoint', 'input_size', 'resize',
                   'detector_config', 'detector_checkpoint')
#: fields given to every embedder
RUN_FIELDS = ('batch_size', 'device', 'num_workers', 'amp', 'amp_dtype',
              'channels_last', 'seed')


def _flag(name: str) -> str:
    return '--' + name.replace('_', '-')


@dataclass
class ScoringSettings:
    """Every option of a scoring run (docs/likelihoods.md).

    Embeddings: ``embedder`` (a registered name or a config dict), the
    shipped embedders' options ``backbone``, ``checkpoint``,
    ``input_size``, ``resize`` (image) and ``detector_config``,
    ``detector_checkpoint`` (detector), ``cameras``,
    ``camera_aggregation``, ``img_prefix``.
    Likelihoods: ``reducer``, ``clusterer``, ``likelihood_def``,
    ``density_k``, ``seed``.
    Running: ``batch_size``, ``device``, ``num_workers``, ``amp``,
    ``amp_dtype``, ``channels_last``, ``cache_dir``, ``use_cache``,
    ``cfg_options``.
    Outputs: ``overwrite``, ``eta``, ``gamma`` (W(p) of the CSV and
    figures), ``figures``, ``save_scorer``, ``score_splits``,
    ``slice_file``.
    """
    embedder: Union[str, Mapping] = 'image'
    backbone: Optional[Mapping] = None
    checkpoint: Optional[str] = None
    input_size: Union[int, Tuple[int, int]] = 384
    resize: str = 'squash'
    detector_config: Optional[str] = None
    detector_checkpoint: Optional[str] = None
    cameras: Optional[Sequence[str]] = None
    camera_aggregation: Optional[str] = None
    img_prefix: Optional[str] = None
    reducer: Optional[Mapping] = field(
        default_factory=lambda: dict(DEFAULT_REDUCER))
    clusterer: Optional[Mapping] = field(
        default_factory=lambda: dict(DEFAULT_CLUSTERER))
    likelihood_def: str = DEFAULT_LIKELIHOOD
    density_k: int = 10
    seed: int = 0
    batch_size: int = 8
    device: str = 'cpu'
    num_workers: int = 2
    amp: bool = False
    amp_dtype: Optional[str] = None
    channels_last: bool = False
    cache_dir: Optional[str] = None
    use_cache: bool = True
    overwrite: bool = False
    eta: float = 1.0
    gamma: float = 5.0
    figures: bool = True
    cfg_options: Optional[Mapping] = None
    save_scorer: bool = False
    score_splits: Sequence[str] = ()
    slice_file: Optional[str] = None

    def __post_init__(self):
        self.score_splits = tuple(self.score_splits or ())
        if self.cameras is not None:
            if isinstance(self.cameras, str):
                self.cameras = [self.cameras]
            self.cameras = list(self.cameras)
        self._check_weight()
        validate_scoring_params(self.reducer, self.clusterer,
                                self.likelihood_def)
        for name in ('density_k', 'seed'):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or (
                    name == 'density_k' and v < 1):
                raise ScoringError(f'{_flag(name)} must be an integer'
                                   f'{" >= 1" if name == "density_k" else ""}'
                                   f', got {v!r}')
        if self.camera_aggregation is not None and \
                self.camera_aggregation not in CAMERA_AGGREGATIONS:
            raise ScoringError(f'unknown camera aggregation '
                               f'{self.camera_aggregation!r}; choose one of '
                               f'{CAMERA_AGGREGATIONS}')
        for s in self.score_splits:
            if s not in EVAL_SPLITS:
                raise ScoringError(f'--score-split {s!r}: one of '
                                   f'{EVAL_SPLITS}')
        if self.save_scorer or self.score_splits:
            kind = str((self.clusterer or DEFAULT_CLUSTERER).get(
                'type', '')).lower()
            reason = get_clusterer(kind).cannot_assign
            if reason and self.likelihood_def != 'density':
                raise ScoringError(f'--save-scorer / --score-split: {reason}')
        self.embedder_cfg()  # checks the embedder and its options
        if self.slice_file:
            from ..evaluation.slice_sources import read_slice_file
            from ..utils.errors import SliceError
            try:
                read_slice_file(self.slice_file)
            except SliceError as e:
                raise ScoringError(str(e)) from e

    @classmethod
    def create(cls, settings: Optional['ScoringSettings'] = None,
               **options) -> 'ScoringSettings':
        """``settings`` with ``options`` replaced (new settings from the
        defaults when ``settings`` is None); an unknown option is a
        ScoringError listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ScoringError(f'unknown scoring option(s) {unknown}; the '
                               f'options are {sorted(known)}')
        if settings is None:
            return cls(**options)
        if not isinstance(settings, cls):
            raise ScoringError(f'settings must be a {cls.__name__}, got '
                               f'{type(settings).__name__}')
        return dataclasses.replace(settings, **options) if options \
            else settings

    def _check_weight(self):
        from ..models.losses.equity_weight import equity_weight
        try:  # validates eta / gamma, naming them
            equity_weight(0.5, self.eta, self.gamma)
        except (TypeError, ValueError) as e:
            raise ScoringError(f'--eta/--gamma (the W(p) of the CSV weight '
                               f'column and figures): {e}') from e

    # ------------------------------------------------------- embedder
    def embedder_cfg(self) -> Dict[str, Any]:
        """``dict(type=NAME, **options)`` of the embedder (without the run
        options): from ``embedder`` when it is a dict, else from the
        fields the embedder names in its ``settings_fields``. An option
        of another embedder is refused."""
        if isinstance(self.embedder, Mapping):
            cfg = dict(self.embedder)
            if 'type' not in cfg:
                raise ScoringError(f'embedder config {cfg!r} has no "type"')
        elif isinstance(self.embedder, str):
            cfg = dict(type=self.embedder)
        else:
            raise ScoringError(f'embedder must be a registered name or a '
                               f'config dict, got {self.embedder!r}')
        cls = EMBEDDERS.get(cfg['type'])
        if cls is None:
            EMBEDDERS.import_from_location()
            raise ScoringError(f'unknown embedder {cfg["type"]!r}; choose one'
                               f' of {sorted(EMBEDDERS.module_dict)} or '
                               'register yours in mmdet3d_equity.scoring.'
                               'EMBEDDERS')
        takes = dict(getattr(cls, 'settings_fields', {}))
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        foreign = [f for f in EMBEDDER_FIELDS if f not in takes
                   and getattr(self, f) != defaults[f]]
        if foreign:
            owners = sorted(
                name for name, c in EMBEDDERS.module_dict.items()
                if set(foreign) & set(getattr(c, 'settings_fields', {})))
            raise ScoringError(
                f'{"/".join(_flag(f) for f in foreign)} '
                f'{"is" if len(foreign) == 1 else "are"} for --embedder '
                f'{" or ".join(owners) or "another embedder"}, not '
                f'{cfg["type"]!r}')
        if cls.uses_cameras is False and (self.cameras or
                                          self.camera_aggregation):
            raise ScoringError(
                '--cameras / --camera-aggregation apply to the image '
                f'embedder only; the {cfg["type"]!r} embedder sees what it '
                'reads itself')
        for f, arg in takes.items():
            if arg in cfg:
                raise ScoringError(f'embedder option {arg!r} given twice '
                                   f'(in the embedder dict and as '
                                   f'{_flag(f)})')
            cfg[arg] = getattr(self, f)
        return cfg

    def run_options(self, logger=None) -> Dict[str, Any]:
        """The options every embedder takes."""
        return dict({f: getattr(self, f) for f in RUN_FIELDS},
                    logger=logger)

    def build_embedder(self, logger=None):
        """The embedder (built from the registry)."""
        return build_embedder(self.embedder_cfg(), self.run_options(logger))

    def cache_dir_for(self, out: str) -> str:
        """The embedding cache folder (default ``<dir of out>/
        embedding_cache``)."""
        import os.path as osp
        return self.cache_dir or osp.join(osp.dirname(osp.abspath(out)),
                                          'embedding_cache')


def build_embedder(cfg: Mapping, run: Mapping):
    """``EMBEDDERS.build(cfg + run options)``; errors of the registry (an
    unknown option) become a ScoringError naming the embedder."""
    full = dict(cfg, **run)
    try:
        return EMBEDDERS.build(full)
    except ScoringError:
        raise
    except TypeError as e:
        raise ScoringError(f'cannot build the embedder {dict(cfg)}: {e}') \
            from e
