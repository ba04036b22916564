"""nuScenes evaluation of slices: the official detection evaluation
(nuscenes-devkit ``DetectionEval``, as NuScenesMetric runs it) restricted
to the samples of a slice, ground-truth counts and class-group means.

The predictions are formatted once with the wrapped NuScenesMetric's own
``format_results``; the devkit loads the ground truth of the evaluation
split once; each slice then evaluates the devkit's ground-truth and
prediction boxes of its samples only (after the devkit's own filters,
which act per box). That is exactly the devkit's evaluation of a split
holding only those samples (checked against NuScenesMetric on a copy of
the tables reduced to the slice, tests/test_slice_metric_nuscenes.py).

nuScenes AP interpolates precision on 101 recall points of the full
precision-recall curve, so it needs no dense variant.
"""
import copy
import os.path as osp
import re
import tempfile
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..utils.errors import ResultsError, SliceError
from .class_groups import check_groups_cover
from .kitti_slices import pick_group
from .slice_kinds import SLICE_DATASETS, SliceDatasetKind, metric_number

#: NuScenesMetric's version -> evaluation split
EVAL_SET = {'v1.0-mini': 'mini_val', 'v1.0-trainval': 'val'}
ERR_NAMES = {'trans_err': 'mATE', 'scale_err': 'mASE',
             'orient_err': 'mAOE', 'vel_err': 'mAVE', 'attr_err': 'mAAE'}
CAM_NUM = 6
AP_KEY_RE = re.compile(
    r'^(?P<group>.*_NuScenes)/(?P<cls>.+)_AP_dist_(?P<d>[0-9.]+)$')
SUMMARY_KEY_RE = re.compile(r'^(?P<group>.*_NuScenes)/(?P<name>mAP|NDS)$')
#: a --metric name of nuScenes
METRIC_RE = re.compile(r'^AP(?:_dist_(?P<d>[0-9.]+))?$')
NUS_DEFAULT_METRIC = 'AP'


@SLICE_DATASETS.register_module('nuscenes')
class NuScenesSliceAdapter(SliceDatasetKind):
    """Evaluate subsets of a NuScenesMetric's evaluated samples."""

    label = 'nuScenes'
    name = kind = 'nuscenes'
    metric_description = 'NuScenesMetric and subclasses'
    select_by = 'id'
    default_metric = NUS_DEFAULT_METRIC
    metric_help = ("'AP' (per-class AP, mean over the matching distances) "
                   "or 'AP_dist_<d>' (e.g. AP_dist_2.0)")
    expected_keys = ("NuScenesMetric keys such as 'NuScenes metric/"
                     "pred_instances_3d_NuScenes/car_AP_dist_2.0'")

    def __init__(self, metric, min_gt: int, dense: bool = True,
                 groups: Optional[Mapping[str, Sequence[str]]] = None):
        super().__init__(metric, min_gt, dense, groups)
        self._tmp = None

    @classmethod
    def accepts(cls, metric) -> bool:
        from mmdet3d.evaluation.metrics import NuScenesMetric
        return isinstance(metric, NuScenesMetric)

    def prepare(self, results: Sequence[dict]) -> List[str]:
        import mmengine
        from mmdet3d.structures import CameraInstance3DBoxes
        from nuscenes import NuScenes
        from nuscenes.eval.detection.evaluate import NuScenesEval
        m = self.metric
        self.classes = list(m.dataset_meta['classes'])
        version = m.dataset_meta['version']
        if version not in EVAL_SET:
            raise SliceError(f'NuScenesMetric evaluates versions '
                             f'{sorted(EVAL_SET)}, not {version!r}')
        if self.groups is not None:
            check_groups_cover(self.groups, self.classes)
        m.version = version
        m.data_infos = mmengine.load(
            m.ann_file, backend_args=m.backend_args)['data_list']
        self.cleanup()
        self._tmp = tempfile.TemporaryDirectory(prefix='slice_nus_')
        result_dict, _ = m.format_results(
            results, self.classes, osp.join(self._tmp.name, 'results'))
        names = [n for n in results[0] if 'pred' in n and '3d' in n
                 and n[0] != '_']
        camera = bool(names) and isinstance(
            results[0][names[0]]['bboxes_3d'], CameraInstance3DBoxes)
        ids = [m.data_infos[r['sample_idx'] // CAM_NUM if camera
                            else r['sample_idx']]['token'] for r in results]
        nusc = NuScenes(version=version, dataroot=m.data_root,
                        verbose=False)
        self.evals = {}
        for name, path in result_dict.items():
            self.evals[name] = NuScenesEval(
                nusc, config=m.eval_detection_configs, result_path=path,
                eval_set=EVAL_SET[version],
                output_dir=osp.join(self._tmp.name, name), verbose=False)
        return ids

    def cleanup(self):
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @staticmethod
    def _subset(boxes, tokens):
        from nuscenes.eval.common.data_classes import EvalBoxes
        out = EvalBoxes()
        for t in tokens:
            out.add_boxes(t, boxes[t] if t in boxes.boxes else [])
        return out

    def _gt_counts(self, tokens) -> Dict[str, int]:
        ev = next(iter(self.evals.values()))
        counts = {c: 0 for c in self.classes}
        for t in tokens:
            for b in ev.gt_boxes.boxes.get(t, []):
                if b.detection_name in counts:
                    counts[b.detection_name] += 1
        return counts

    def evaluate(self, tokens: Sequence[str], stock: Dict[str, float] = None
                 ) -> Dict[Tuple[str, str], float]:
        """Values of the samples ``tokens``: ('stock', key) (unless
        ``stock``, the whole split's values, is given), ('count', name),
        ('few', name), ('group', name)."""
        tokens = list(dict.fromkeys(tokens))
        counts = self._gt_counts(tokens)
        out = {('count', 'num_samples'): float(len(tokens))}
        for c in self.classes:
            out[('count', c)] = float(counts[c])
            out[('few', c)] = float(counts[c] < self.min_gt)
        if not tokens or not any(counts.values()):
            return out
        all_present = all(counts[c] > 0 for c in self.classes)
        class_ap = {}
        for name, ev in self.evals.items():
            if stock is not None and self.groups is None:
                # the whole split: the wrapped metric's own values are
                # reported, and without class groups nothing else is needed
                # from a second evaluation
                continue
            sub = copy.copy(ev)
            sub.gt_boxes = self._subset(ev.gt_boxes, tokens)
            sub.pred_boxes = self._subset(ev.pred_boxes, tokens)
            metrics, _ = sub.evaluate()
            summary = metrics.serialize()
            pre = f'{name}_NuScenes'
            detail = {}
            for c in self.classes:
                for k, v in summary['label_aps'][c].items():
                    detail[f'{pre}/{c}_AP_dist_{k}'] = (c, float(f'{v:.4f}'))
                for k, v in summary['label_tp_errors'][c].items():
                    detail[f'{pre}/{c}_{k}'] = (c, float(f'{v:.4f}'))
                for k, v in summary['tp_errors'].items():
                    detail[f'{pre}/{ERR_NAMES[k]}'] = (None,
                                                       float(f'{v:.4f}'))
            detail[f'{pre}/NDS'] = (None, summary['nd_score'])
            detail[f'{pre}/mAP'] = (None, summary['mean_ap'])
            if stock is None:
                for key, (c, v) in detail.items():
                    if (counts[c] > 0) if c is not None else all_present:
                        out[('stock', key)] = float(v)
            class_ap[name] = {c: float(summary['mean_dist_aps'][c])
                              for c in self.classes if counts[c] > 0}
        if self.groups is not None:
            for name, aps in class_ap.items():
                for g, members in self.groups.items():
                    vals = [aps[c] for c in members if c in aps]
                    out[('count', f'classes_{g}')] = float(len(vals))
                    if vals:
                        label = g if len(class_ap) == 1 else f'{name}_{g}'
                        out[('group', f'{label}_mAP')] = float(
                            f'{np.mean(vals):.4f}')
        return out

    def table_title(self) -> str:
        return 'nuScenes AP at 2 m (per class)'

    def table_columns(self) -> List[Tuple[str, str, str]]:
        name = next(iter(self.evals)) if getattr(self, 'evals', None) \
            else 'pred_instances_3d'
        return [(c, f'{name}_NuScenes/{c}_AP_dist_2.0', c)
                for c in self.classes]

    def table_extra(self, values) -> str:
        if not self.groups:
            return ''
        lines = []
        for name, vals in values.items():
            g = ', '.join(f'{k[:-4]} {v:.3f}' for (var, k), v in
                          vals.items() if var == 'group')
            lines.append(f'  {"all" if name is None else name}: '
                         f'{g or "missing"}')
        return 'class-group mean AP:\n' + '\n'.join(lines)

    # -------------------------------------------------------- key grammar
    @classmethod
    def matches_key(cls, key: str) -> bool:
        return bool(AP_KEY_RE.match(key) or SUMMARY_KEY_RE.match(key))

    @classmethod
    def matches_metric(cls, metric: str) -> bool:
        return METRIC_RE.match(metric) is not None

    @classmethod
    def view(cls, path, items, metric):
        """``dict(classes, summary, distances)`` of ``metric``: per-class AP
        at one distance, or their mean over the distances ('AP')."""
        m = METRIC_RE.match(metric)
        groups = OrderedDict()
        for k, v in items:
            am, sm = AP_KEY_RE.match(k), SUMMARY_KEY_RE.match(k)
            match = am or sm
            if match is None:
                continue
            g = groups.setdefault(match['group'], dict(
                aps=OrderedDict(), summary=OrderedDict()))
            if am is not None:
                g['aps'].setdefault(am['cls'], OrderedDict())[
                    float(am['d'])] = metric_number(path, k, v)
            else:
                g['summary'][sm['name']] = metric_number(path, k, v)
        if not groups:
            return None
        name = pick_group(path, groups, 'pred_instances_3d_NuScenes',
                          'nuScenes metrics')
        g = groups[name]
        classes = OrderedDict()
        for c, by_d in g['aps'].items():
            if m['d'] is None:
                classes[c] = sum(by_d.values()) / len(by_d)
                continue
            d = float(m['d'])
            if d not in by_d:
                raise ResultsError(
                    f"{path!r}: no '{name}/{c}_AP_dist_{m['d']}'; the "
                    f'distances there are {sorted(by_d)}')
            classes[c] = by_d[d]
        summary = OrderedDict((k, g['summary'][k]) for k in ('mAP', 'NDS')
                              if k in g['summary'])
        return dict(classes=classes, summary=summary,
                    distances={c: sorted(d) for c, d in g['aps'].items()})
