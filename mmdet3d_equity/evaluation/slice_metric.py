"""SliceMetric: a stock mmdet3d metric on the whole split and on slices.

::

    val_evaluator = dict(
        type='SliceMetric',
        metric=dict(type='KittiCPUMetric',
                    ann_file=data_root + 'kitti_infos_val.pkl'),
        slices=[dict(type='SliceFile', path=data_root + 'frame_modes.json')])

The whole-split keys are exactly the wrapped metric's; every slice adds the
wrapped metric's keys on the slice's samples alone, plus counts, small-slice
flags, the dense AP40 (KITTI) and class-group means (nuScenes). The key
grammar is in :mod:`.slice_keys` and docs/slices.md. A slice without
samples, or without ground truth of a class, has no key for those values
(missing, never 0); its counts say why.
"""
from collections import OrderedDict
from typing import Dict, Optional, Sequence

from mmdet3d.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..utils.errors import SliceError
from .class_groups import build_class_groups
from .slice_keys import WHOLE, format_metric_key
from .slice_kinds import kind_for_metric
from .slice_sources import build_slice_source

#: default small-slice threshold: fewer positive objects than this in a
#: cell are flagged ('few' keys) and marked '*' in the log table
MIN_GT = 10


@METRICS.register_module()
class SliceMetric(BaseMetric):
    """Report a wrapped mmdet3d metric on the whole split and on slices.

    Args:
        metric: config of the wrapped metric: one a registered dataset
            kind accepts (:data:`~.slice_kinds.SLICE_DATASETS`; shipped:
            KittiMetric, KittiCPUMetric, NuScenesMetric, and subclasses).
        slices: slice source configs (``SliceFile``,
            ``SceneDescriptionSlices``, ``LikelihoodSlices`` or your own,
            see :data:`SLICE_SOURCES`). Slice names must be unique.
        min_gt: cells with fewer positive ground-truth objects are flagged
            as too small to mean much (``few`` keys).
        dense: report the dense AP40 (KITTI; ``dense`` keys), which a
            perfect detector scores 100 on any slice.
        groups: class-frequency groups (nuScenes): ``'lt3d'``,
            ``dict(type='counts', ann_file=..., many=..., few=...)`` or
            explicit ``dict(Many=[...], Medium=[...], Few=[...])``.
        log_table: log a per-slice table after each evaluation (the
            runner's log line then holds the whole-split keys only when the
            config sets ``log_processor = dict(type='SliceLogProcessor')``;
            every key stays in the metrics JSON).
        prefix: key prefix; default the wrapped metric's.
        collect_device: default the wrapped metric's.
    """

    def __init__(self, metric: dict, slices: Sequence[dict] = (),
                 min_gt: int = MIN_GT, dense: bool = True,
                 groups=None, log_table: bool = True,
                 prefix: Optional[str] = None,
                 collect_device: Optional[str] = None) -> None:
        if not isinstance(metric, dict) or 'type' not in metric:
            raise SliceError(f'SliceMetric: metric must be a metric config '
                             f'dict with a "type", got {metric!r}')
        self.metric = METRICS.build(metric)
        if isinstance(self.metric, SliceMetric):
            raise SliceError('SliceMetric cannot wrap another SliceMetric')
        if not isinstance(min_gt, int) or min_gt < 1:
            raise SliceError(f'min_gt must be an int >= 1, got {min_gt!r}')
        if not isinstance(dense, bool):
            raise SliceError(f'dense must be True or False, got {dense!r}')
        self.class_groups = build_class_groups(groups)
        self.adapter = kind_for_metric(self.metric)(
            self.metric, min_gt=min_gt, dense=dense,
            groups=self.class_groups)
        super().__init__(
            collect_device=collect_device or self.metric.collect_device,
            prefix=prefix or self.metric.prefix)
        self.min_gt = min_gt
        self.log_table = bool(log_table)
        self.sources = [build_slice_source(c) for c in slices]
        self.slices: 'OrderedDict[str, set]' = OrderedDict()
        self._source_names = []
        owner = {}
        for src in self.sources:
            found, names = src.load()
            self._source_names.append((src, list(names)))
            for n in names:
                if n in self.slices:
                    raise SliceError(
                        f'slice {n!r} comes from {owner[n]} and from '
                        f'{src.describe()}; slice names must be unique (give '
                        'one source other names)')
                self.slices[n] = set(found.get(n, ()))
                owner[n] = src.describe()
        self._check_sources_match_split()

    # ------------------------------------------------------------ checks
    def _check_sources_match_split(self):
        """Before any training: each source must know some of the evaluated
        samples (a file for another split or keyed by list positions is
        refused), and the slices are logged with their sizes."""
        if not self.sources:
            return
        ids = set(self.adapter.split_identities())
        for src, names in self._source_names:
            covered = set().union(*(self.slices[n] for n in names))
            if not covered & ids:
                raise SliceError(
                    f'none of the {len(ids)} samples of '
                    f'{self.metric.ann_file} is in any slice of '
                    f'{src.describe()} (its ids look like '
                    f'{sorted(covered)[:3]}; the split\'s like '
                    f'{sorted(ids)[:3]}). Slices are keyed by the KITTI '
                    'frame number or the nuScenes sample token of the '
                    'evaluated split.')
        sizes = ', '.join(f'{n}: {len(self.slices[n] & ids)}'
                          for n in self.slices)
        print_log(f'SliceMetric: {len(self.slices)} slices of the '
                  f'{len(ids)} evaluated samples ({sizes})',
                  logger='current')

    # ------------------------------------------------------ BaseMetric API
    @property
    def dataset_meta(self):
        return self.metric.dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta):
        self.metric.dataset_meta = dataset_meta

    def process(self, data_batch, data_samples) -> None:
        self.metric.process(data_batch, data_samples)
        self.results.extend(self.metric.results)
        self.metric.results.clear()

    def compute_metrics(self, results: list) -> Dict[str, float]:
        from .kitti_cpu_iou import frozen_gc
        with frozen_gc():
            return self._compute(results)

    def _compute(self, results: list) -> Dict[str, float]:
        whole = self.metric.compute_metrics(results)
        out = dict(whole)
        if not results:
            return out
        try:
            ids = self.adapter.prepare(results)
            units = OrderedDict()
            units[None] = list(range(len(results)))
            for name, members in self.slices.items():
                units[name] = [i for i, s in enumerate(ids) if s in members]
            values = OrderedDict()
            for name, idx in units.items():
                sel = idx if self.adapter.select_by == 'index' else [
                    ids[i] for i in idx]
                values[name] = self.adapter.evaluate(
                    sel, stock=whole if name is None else None)
        finally:
            self.adapter.cleanup()
        for name, vals in values.items():
            for (variant, key), v in vals.items():
                out[format_metric_key('', name, variant, key)] = v
        if self.log_table:
            self._log_table(values, whole)
        return out

    # ------------------------------------------------------------ logging
    def _log_table(self, values, whole):
        print_log(self.format_table(values, whole), logger='current')

    def format_table(self, values, whole) -> str:
        """The per-slice table: one row per slice, one column per
        (class, ...) of the kind, each cell the stock value (and the other
        table variants, e.g. the dense AP40) with the positive count."""
        from terminaltables import AsciiTable
        kind = self.adapter
        variants = tuple(kind.table_variants)
        header = ['slice', 'samples'] + [label for label, _, _ in
                                         kind.table_columns()]
        rows = [header]
        for name, vals in values.items():
            row = [WHOLE if name is None else name,
                   str(int(vals[('count', 'num_samples')]))]
            for _, suffix, count in kind.table_columns():
                cnt = vals.get(('count', count), 0)
                cells = []
                for var in variants:
                    if var == 'stock' and name is None:
                        found = [v for k, v in whole.items()
                                 if k.endswith(suffix)] if cnt else []
                    else:
                        found = [v for (vv, k), v in vals.items()
                                 if vv == var and k.endswith(suffix)]
                    cells.append(f'{found[0]:.1f}' if found else
                                 'missing' if var == 'stock' else '')
                cell = ' / '.join(c for c in cells if c)
                star = '*' if cnt < self.min_gt else ''
                row.append(f'{cell} (n={int(cnt)}){star}')
            rows.append(row)
        msg = (f'SliceMetric ({kind.table_title()}; n = positive '
               f'ground-truth objects, * = fewer than min_gt={self.min_gt};'
               ' every value is in the metrics JSON):\n' +
               AsciiTable(rows).table)
        extra = kind.table_extra(values)
        return msg + ('\n' + extra if extra else '')
