"""Dataset kinds of :class:`~.slice_metric.SliceMetric` and of the
metric-key grammar: one class per kind, registered in
:data:`SLICE_DATASETS` (``'kitti'``: :mod:`.kitti_slices`,
``'nuscenes'``: :mod:`.nuscenes_slices`). A third kind is one module
(docs/extending.md): SliceMetric picks the kind whose :meth:`accepts`
takes the wrapped metric, and :mod:`.results` reads a metrics file with
the kind whose keys it holds.

What a kind states:

* evaluating slices (an instance per SliceMetric): ``split_identities()``
  (the evaluated samples, before training), ``prepare(results)``
  (each result's sample identity), ``evaluate(selection, stock)`` (the
  values of a slice: ``{(variant, name): value}``, see
  :mod:`.slice_keys`), ``select_by`` ('index': ``evaluate`` takes the
  results' positions, 'id': their identities), ``cleanup()``;
* its log table: ``table_title()``, ``table_columns()`` (``(label, key
  suffix, count name)`` per column), ``table_variants`` (``('stock',)`` or
  ``('stock', 'dense')``), ``table_extra(values)``;
* its key grammar (class methods, no instance): ``matches_key(key)`` (a
  wrapped metric key, prefix removed, is one of this kind's),
  ``matches_metric(name)`` (a ``--metric`` name of this kind),
  ``default_metric``, ``metric_help``, ``expected_keys``,
  ``view(path, items, metric)`` (``dict(classes, summary)`` of one metric
  from ``[(key, value)]``, or None), ``count_cell(metric)`` (the count /
  few key name of a class for that metric).
"""
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mmengine.registry import Registry

from ..utils.errors import ResultsError, SliceError

SLICE_DATASETS = Registry('equity slice dataset kind',
                          locations=['mmdet3d_equity.evaluation'])


def metric_number(path, key, value) -> float:
    """A finite number from a metrics file, or ResultsError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResultsError(f'{path!r}: {key!r} is {value!r}, expected a '
                           'number')
    value = float(value)
    if not math.isfinite(value):
        raise ResultsError(f'{path!r}: {key!r} is {value}, expected a '
                           'finite AP')
    return value


def slice_kinds() -> Dict[str, type]:
    """``{name: kind class}`` of the registered kinds."""
    SLICE_DATASETS.import_from_location()
    return dict(SLICE_DATASETS.module_dict)


def kind_for_metric(metric) -> type:
    """The kind whose :meth:`accepts` takes the wrapped ``metric``."""
    kinds = slice_kinds()
    for cls in kinds.values():
        if cls.accepts(metric):
            return cls
    raise SliceError(
        f'SliceMetric supports the metrics of the dataset kinds '
        f'{sorted(kinds)} ('
        + '; '.join(cls.metric_description for cls in kinds.values())
        + f'), not {type(metric).__name__}; register a kind for it in '
        'mmdet3d_equity.evaluation.SLICE_DATASETS (docs/extending.md)')


class SliceDatasetKind:
    """Base of the dataset kinds (module docstring)."""
    name = 'kind'
    #: the dataset's name in messages
    label = 'kind'
    #: which wrapped metrics it takes, for messages
    metric_description = ''
    select_by = 'index'
    default_metric = ''
    metric_help = ''
    expected_keys = ''

    def __init__(self, metric, min_gt: int, dense: bool = True,
                 groups=None):
        self.metric = metric
        self.min_gt = int(min_gt)
        self.dense = bool(dense)
        self.groups = groups
        if getattr(metric, 'format_only', False):
            raise SliceError(f'SliceMetric evaluates; the wrapped '
                             f'{type(metric).__name__} has format_only=True')

    @classmethod
    def accepts(cls, metric) -> bool:
        return False

    # ------------------------------------------------------ evaluation
    def split_identities(self) -> List[str]:
        """Identities of the evaluated samples (default: those of the
        wrapped metric's ``ann_file``, an mmdet3d info file), to check the
        slice sources before training."""
        import mmengine

        from ..utils.identity import sample_identity
        data = mmengine.load(self.metric.ann_file, backend_args=getattr(
            self.metric, 'backend_args', None))
        return [sample_identity(info) for info in data['data_list']]

    def prepare(self, results: Sequence[dict]) -> List[str]:
        raise NotImplementedError(f'{type(self).__name__}.prepare')

    def evaluate(self, selection, stock: Optional[Dict] = None
                 ) -> Dict[Tuple[str, str], float]:
        raise NotImplementedError(f'{type(self).__name__}.evaluate')

    def cleanup(self) -> None:
        pass

    # ------------------------------------------------------ log table
    table_variants: Tuple[str, ...] = ('stock', )

    def table_title(self) -> str:
        return 'AP per class'

    def table_columns(self) -> List[Tuple[str, str, str]]:
        return []

    def table_extra(self, values) -> str:
        return ''

    # ---------------------------------------------------- key grammar
    @classmethod
    def matches_key(cls, key: str) -> bool:
        return False

    @classmethod
    def matches_metric(cls, metric: str) -> bool:
        return False

    @classmethod
    def view(cls, path: str, items: Sequence[Tuple[str, float]],
             metric: str) -> Optional[Dict]:
        return None

    @classmethod
    def count_cell(cls, metric: str) -> Callable[[str], str]:
        return lambda c: c
