"""KITTI evaluation of slices: the stock KittiMetric evaluation on a subset
of the evaluated frames, ground-truth counts, and the dense AP40.

Everything goes through the wrapped metric's own ``format_results`` and
``kitti_evaluate`` (mmdet3d's ``kitti_eval`` unchanged), so a slice's value
is exactly what the stock metric gives on the slice's frames alone.

Dense AP40. ``kitti_eval``'s AP40 samples the precision at the recall
points k/40 (k = 0..40) through the ranks of the true positives, one rank
per point, so a cell (class, difficulty) with n positive ground-truth
objects reaches at most n of the points: a perfect detector scores
(n-1)/40 for n <= 40 (10.0 with 5 Cars, 97.5 with 40). Repeating every
evaluated frame (ground truth and predictions) R times leaves precision and
recall at every score threshold unchanged and makes the ranks fine enough.
With R >= 21 and R * n >= 61 for every repeated cell, ``kitti_eval`` then
samples each recall point k/40 (k >= 1) at the first true positive that
reaches it; for n <= 40 its AP40 is exactly the 40-point interpolated AP of
the full precision-recall curve, (1/40) sum_k max{P(r): r >= k/40}, with the
one convention kitti_eval keeps from the official devkit: when the highest
recall reached is not a multiple of 1/40, its precision also counts for the
next recall point. The dense value of a cell is that AP for 0 < n <= 60 and
the stock AP40 for n > 60 (kitti_eval then reaches every recall point
itself); cells without positives are missing. A perfect detector scores 100
on every cell. Proof in docs/slices.md; checked against an independent
computation in tests/test_slice_metric_kitti.py.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..utils.errors import SliceError
from .slice_kinds import SLICE_DATASETS, SliceDatasetKind, metric_number

DIFFICULTIES = ('easy', 'moderate', 'hard')
#: kitti_eval's class ids
KITTI_CLASS_IDS = {'Car': 0, 'Pedestrian': 1, 'Cyclist': 2, 'Van': 3,
                   'Person_sitting': 4}
#: cells with more positives than this use the stock AP40 as dense value
DENSE_STOCK_ABOVE = 60
#: the repetition R: R >= MIN_REPEAT and R * n >= MIN_RANKS (docstring)
MIN_REPEAT = 21
MIN_RANKS = 61


def dense_repeat(n_min: int) -> int:
    """R for the smallest positive count ``n_min`` of the repeated cells."""
    return max(MIN_REPEAT, -(-MIN_RANKS // int(n_min)))


KEY_RE = re.compile(
    r'^(?P<res>.+)/KITTI/(?P<cls>.+?)_(?P<type>3D|BEV|2D)_AP'
    r'(?P<n>11|40)_(?P<diff>easy|moderate|hard)(?:_(?P<iou>strict|loose))?$')
#: a --metric name of KITTI
METRIC_RE = re.compile(
    r'^(?P<type>3D|BEV|2D)_AP(?P<n>11|40)_(?P<diff>easy|moderate|hard)_'
    r'(?P<iou>strict|loose)$')
KITTI_DEFAULT_METRIC = '3D_AP40_moderate_strict'
#: kitti_eval's IoU thresholds of the 3D / BEV boxes (Car, Pedestrian,
#: Cyclist): strict and loose
IOU_THRESHOLDS = dict(strict='0.7/0.5/0.5', loose='0.5/0.25/0.25')


def parse_kitti_key(key: str):
    """``(result name, class or 'Overall', box type, 11|40, difficulty,
    iou or None)`` of a KittiMetric key, or None."""
    m = KEY_RE.match(key)
    if not m:
        return None
    return (m['res'], m['cls'], m['type'], int(m['n']), m['diff'],
            m['iou'])


@SLICE_DATASETS.register_module('kitti')
class KittiSliceAdapter(SliceDatasetKind):
    """Evaluate subsets of a KittiMetric's evaluated frames."""

    label = 'KITTI'
    name = kind = 'kitti'
    metric_description = 'KittiMetric, KittiCPUMetric and subclasses'
    select_by = 'index'
    default_metric = KITTI_DEFAULT_METRIC
    metric_help = ('<3D|BEV|2D>_AP<11|40>_<easy|moderate|hard>_'
                   f'<strict|loose>, e.g. {KITTI_DEFAULT_METRIC}')
    expected_keys = ("KittiMetric keys such as 'Kitti metric/"
                     "pred_instances_3d/KITTI/Car_3D_AP40_moderate_strict'")

    def __init__(self, metric, min_gt: int, dense: bool = True,
                 groups=None):
        super().__init__(metric, min_gt, dense, groups)
        if groups is not None:
            raise SliceError('class groups (groups=...) are for nuScenes; '
                             'KITTI reports per class')
        from mmdet3d.evaluation.metrics import KittiMetric

        from .kitti_cpu_iou import numba_cuda_available
        if type(metric) is KittiMetric and not numba_cuda_available():
            raise SliceError(
                "SliceMetric: KittiMetric needs numba CUDA for its rotated "
                "IoU and this machine has none; use type='KittiCPUMetric' "
                '(same arguments and values, CPU kernel where CUDA is '
                'missing)')

    @classmethod
    def accepts(cls, metric) -> bool:
        from mmdet3d.evaluation.metrics import KittiMetric
        return isinstance(metric, KittiMetric)

    # ------------------------------------------------------------ prepare
    def prepare(self, results: Sequence[dict]) -> List[str]:
        """Format the predictions once; return each result's identity."""
        import mmengine

        from ..utils.identity import sample_identity
        m = self.metric
        self.classes = list(m.dataset_meta['classes'])
        unknown = [c for c in self.classes if c not in KITTI_CLASS_IDS]
        if unknown:
            raise SliceError(f'KITTI evaluation knows no class {unknown}')
        infos = mmengine.load(m.ann_file, backend_args=m.backend_args)
        m.data_infos = m.convert_annos_to_kitti_annos(infos)
        # results carry their position in the evaluated list as sample_idx
        # (mmengine overwrites the info's); the stored info knows the frame
        ids = [sample_identity(m.data_infos[r['sample_idx']])
               for r in results]
        result_dict, tmp_dir = m.format_results(
            results, pklfile_prefix=None, submission_prefix=None,
            classes=self.classes)
        if tmp_dir is not None:
            tmp_dir.cleanup()
        self.dt = result_dict
        self.gt = [m.data_infos[r['sample_idx']]['kitti_annos']
                   for r in results]
        self.positives = self._count_positives(self.gt)
        return ids

    def _count_positives(self, gt_annos) -> np.ndarray:
        """(frames, classes, 3): positive (not ignored) objects per
        difficulty, exactly as kitti_eval counts them."""
        from mmdet3d.evaluation.functional.kitti_utils.eval import clean_data
        empty = dict(name=np.array([]), bbox=np.zeros((0, 4)))
        out = np.zeros((len(gt_annos), len(self.classes), 3), np.int64)
        for f, g in enumerate(gt_annos):
            if len(g['name']) == 0:
                continue
            for c, cls in enumerate(self.classes):
                for d in range(3):
                    out[f, c, d] = clean_data(g, empty, KITTI_CLASS_IDS[cls],
                                              d)[0]
        return out

    # ----------------------------------------------------------- evaluate
    def _evaluate(self, idx: Sequence[int], classes: Sequence[str],
                  repeat: int = 1) -> Dict[str, float]:
        """The wrapped metric's kitti_evaluate on frames ``idx`` (each
        repeated ``repeat`` times) for ``classes``."""
        m = self.metric
        # kitti_eval reads the first frame's first object (alpha check):
        # start with a frame that has ground truth (the order of frames does
        # not change any value)
        first = [i for i in idx if len(self.gt[i]['name'])]
        order = first[:1] + [i for i in idx if not first or i != first[0]]
        order = [i for i in order for _ in range(repeat)]
        out = {}
        for metric in m.metrics:
            out.update(m.kitti_evaluate(
                {n: [v[i] for i in order] for n, v in self.dt.items()},
                [self.gt[i] for i in order], metric=metric,
                classes=list(classes), logger='silent'))
        return out

    def evaluate(self, idx: Sequence[int], stock: Dict[str, float] = None
                 ) -> Dict[Tuple[str, str], float]:
        """Values of the frames ``idx``: ('stock', key) (unless ``stock``,
        the whole split's values, is given), ('dense', key), ('count', name),
        ('few', name)."""
        idx = list(idx)
        n_pos = self.positives[idx].sum(0) if idx else np.zeros(
            (len(self.classes), 3), np.int64)
        out = {('count', 'num_samples'): float(len(idx))}
        for c, cls in enumerate(self.classes):
            for d, diff in enumerate(DIFFICULTIES):
                out[('count', f'{cls}_{diff}')] = float(n_pos[c, d])
                out[('few', f'{cls}_{diff}')] = float(
                    n_pos[c, d] < self.min_gt)
        if not idx or n_pos.sum() == 0:
            return out  # nothing to evaluate: every AP is missing
        own = stock is None
        if own:
            stock = self._evaluate(idx, self.classes)
        present = {(cls, diff): n_pos[c, d] > 0
                   for c, cls in enumerate(self.classes)
                   for d, diff in enumerate(DIFFICULTIES)}
        all_present = {diff: all(present[(cls, diff)] for cls in self.classes)
                       for diff in DIFFICULTIES}
        if own:
            for key, v in stock.items():
                p = parse_kitti_key(key)
                ok = (all(all_present.values()) if p is None else
                      all_present[p[4]] if p[1] == 'Overall' else
                      present.get((p[1], p[4]), False))
                if ok:
                    out[('stock', key)] = float(v)
        if self.dense:
            out.update(self._dense(idx, n_pos, stock, present, all_present))
        return out

    def _dense(self, idx, n_pos, stock, present, all_present):
        small = (n_pos > 0) & (n_pos <= DENSE_STOCK_ABOVE)
        classes = [cls for c, cls in enumerate(self.classes) if small[c].any()]
        rep = {}
        if classes:
            self.last_repeat = dense_repeat(n_pos[small].min())
            rep = self._evaluate(idx, classes, self.last_repeat)
        out, per_class = {}, {}
        for key, v in stock.items():
            p = parse_kitti_key(key)
            if p is None or p[3] != 40 or p[1] == 'Overall':
                continue
            res, cls, box, _, diff, iou = p
            c = self.classes.index(cls)
            n = n_pos[c, DIFFICULTIES.index(diff)]
            if n == 0:
                continue
            value = float(rep[key]) if n <= DENSE_STOCK_ABOVE else float(v)
            out[('dense', key)] = value
            per_class[(res, box, diff, iou, cls)] = value
        # Overall: mean over classes (strict, as kitti_eval's Overall) when
        # every class has positives at that difficulty
        for key in stock:
            p = parse_kitti_key(key)
            if p is None or p[3] != 40 or p[1] != 'Overall':
                continue
            res, _, box, _, diff, _ = p
            if not all_present[diff]:
                continue
            vals = [per_class.get((res, box, diff, 'strict', cls))
                    for cls in self.classes]
            if all(v is not None for v in vals):
                out[('dense', key)] = float(f'{np.mean(vals):.4f}')
        return out

    # ------------------------------------------------------------ logging
    @property
    def table_variants(self):
        return ('stock', 'dense') if self.dense else ('stock', )

    def table_title(self) -> str:
        return ('3D AP40 moderate, strict and loose IoU (Car/Pedestrian/'
                f'Cyclist {IOU_THRESHOLDS["strict"]} and '
                f'{IOU_THRESHOLDS["loose"]})'
                + (': stock / dense' if self.dense else ''))

    def table_columns(self) -> List[Tuple[str, str, str]]:
        """(label, key suffix, count name): 3D AP40 moderate, strict and
        loose IoU, per class."""
        return [(f'{cls} {iou}', f'KITTI/{cls}_3D_AP40_moderate_{iou}',
                 f'{cls}_moderate')
                for cls in self.classes for iou in ('strict', 'loose')]

    # -------------------------------------------------------- key grammar
    @classmethod
    def matches_key(cls, key: str) -> bool:
        return KEY_RE.match(key) is not None

    @classmethod
    def matches_metric(cls, metric: str) -> bool:
        return METRIC_RE.match(metric) is not None

    @classmethod
    def count_cell(cls, metric: str):
        diff = METRIC_RE.match(metric)['diff']
        return lambda c: f'{c}_{diff}'

    @classmethod
    def view(cls, path, items, metric):
        """``dict(classes, summary)`` of ``metric`` (KittiMetric's
        ``Overall`` keys carry no IoU suffix and are the strict ones)."""
        m = METRIC_RE.match(metric)
        want = f"{m['type']}_AP{m['n']}_{m['diff']}"
        groups = OrderedDict()
        for k, v in items:
            km = KEY_RE.match(k)
            if km is None:
                continue
            g = groups.setdefault(km['res'], dict(classes=OrderedDict(),
                                                  summary=OrderedDict()))
            if f"{km['type']}_AP{km['n']}_{km['diff']}" != want:
                continue
            if km['cls'] == 'Overall':
                if (km['iou'] or 'strict') == m['iou']:
                    g['summary']['Overall'] = metric_number(path, k, v)
            elif km['iou'] == m['iou']:
                g['classes'][km['cls']] = metric_number(path, k, v)
        if not groups:
            return None
        return groups[pick_group(path, groups, 'pred_instances_3d',
                                 'KITTI metrics')]


def pick_group(path, groups, preferred, what):
    """The one result group (e.g. ``pred_instances_3d``) of a metrics
    file, or the one ending in ``preferred``."""
    from ..utils.errors import ResultsError
    if len(groups) == 1:
        return next(iter(groups))
    pref = [g for g in groups if g.endswith(preferred)]
    if len(pref) == 1:
        return pref[0]
    raise ResultsError(
        f'{path!r} holds {what} for several results {sorted(groups)}; '
        f'expected one (or one ending in {preferred!r})')
