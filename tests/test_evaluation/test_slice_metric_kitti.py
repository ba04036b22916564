"""SliceMetric on KITTI: every slice value equals the stock metric run on a
split holding only the slice's frames; missing slices/classes have no keys;
a perfect detector scores 100 (dense AP40) on slices with few objects; the
dense AP40 equals an independent computation of the interpolated AP."""
import copy
import json
import os.path as osp

import mmengine
import numpy as np
import pytest
from _slice_helpers import (
    KITTI_CLASSES,
    build_val_dataset,
    gt_predictions,
    reduced_info_file,
    strip,
    subset_results,
)

PREFIX = 'Kitti metric'


def _metric(cfg):
    from mmdet3d.registry import METRICS
    m = METRICS.build(cfg)
    m.dataset_meta = dict(classes=KITTI_CLASSES)
    return m


def _val_ids(root):
    info = mmengine.load(osp.join(root, 'kitti_infos_val.pkl'))
    return [str(d['sample_idx']) for d in info['data_list']]


def _stock(root, results, positions, tmp_path, name):
    ann = reduced_info_file(osp.join(root, 'kitti_infos_val.pkl'),
                            positions, str(tmp_path / f'{name}.pkl'))
    return _metric(dict(type='KittiCPUMetric', ann_file=ann)) \
        .compute_metrics(subset_results(results, positions))


@pytest.fixture(scope='module')
def kitti(tiny_kitti_root):
    import mmdet3d_equity  # noqa: F401
    ds = build_val_dataset('kitti', tiny_kitti_root + '/')
    return dict(root=tiny_kitti_root, ds=ds)


@pytest.mark.slow
def test_slices_equal_stock_metric_on_reduced_split(kitti, tmp_path):
    root = kitti['root']
    results = gt_predictions(kitti['ds'], 'noisy', seed=1)
    ids = _val_ids(root)
    # the trap: positions in the val list are not the frame numbers
    assert ids != [str(i) for i in range(len(ids))]
    infos = mmengine.load(osp.join(root, 'kitti_infos_val.pkl'))['data_list']
    no_cyc = [str(d['sample_idx']) for d in infos if not any(
        inst['bbox_label'] == KITTI_CLASSES.index('Cyclist')
        for inst in d['instances'])]
    assert no_cyc and len(no_cyc) < len(ids)
    # 'odd' and 'no_cyclist' overlap: a frame may carry two names
    assignment = {}
    for i in ids[1::2]:
        assignment.setdefault(i, []).append('odd')
    for i in no_cyc:
        assignment.setdefault(i, []).append('no_cyclist')
    assert any(len(v) == 2 for v in assignment.values())
    extra = tmp_path / 'extra.json'
    extra.write_text(json.dumps(dict(
        slices=assignment, names=['odd', 'no_cyclist', 'empty'])))
    modes = osp.join(root, 'frame_modes.json')
    m = _metric(dict(
        type='SliceMetric', dense=False,
        metric=dict(type='KittiCPUMetric',
                    ann_file=osp.join(root, 'kitti_infos_val.pkl')),
        slices=[dict(type='SliceFile', path=modes),
                dict(type='SliceFile', path=str(extra))]))
    m.results = copy.deepcopy(results)
    out = m.evaluate(len(results))

    whole = _stock(root, results, range(len(ids)), tmp_path, 'all')
    assert {k[len(PREFIX) + 1:]: v for k, v in out.items()
            if '/@' not in k} == whole

    frame_modes = json.load(open(modes))['modes']
    slices = {s: [p for p, i in enumerate(ids) if frame_modes[i] == s]
              for s in ('day', 'dusk', 'fog')}
    slices['odd'] = list(range(1, len(ids), 2))
    slices['no_cyclist'] = [p for p, i in enumerate(ids) if i in no_cyc]
    metrics = {k[len(PREFIX) + 1:]: v for k, v in out.items()}
    for name, positions in slices.items():
        n = metrics[f'@{name}:count/num_samples']
        assert n == len(positions), name
        if not positions:
            continue
        ref = _stock(root, results, positions, tmp_path, name)
        mine = strip(metrics, name)
        for key, value in ref.items():
            cls, diff = key.split('/KITTI/')[1].split('_')[0], None
            diff = [d for d in ('easy', 'moderate', 'hard') if d in key][0]
            classes = KITTI_CLASSES if cls == 'Overall' else [cls]
            counts = [metrics[f'@{name}:count/{c}_{diff}'] for c in classes]
            if min(counts) > 0:
                assert mine[key] == value, (name, key)
            else:  # kitti_eval reports 0.0 here: we report it missing
                assert key not in mine and (cls == 'Overall' or value == 0)
        assert set(mine) <= set(ref)
    # a class without ground truth in a slice is missing, never 0
    assert metrics['@no_cyclist:count/Cyclist_moderate'] == 0
    assert not [k for k in strip(metrics, 'no_cyclist') if 'Cyclist' in k
                or 'Overall' in k]
    assert strip(metrics, 'no_cyclist')[
        'pred_instances_3d/KITTI/Car_3D_AP40_moderate_strict'] >= 0
    # a declared slice without samples: counts only
    empty = {k: v for k, v in metrics.items() if k.startswith('@empty')}
    assert empty['@empty:count/num_samples'] == 0
    assert all(':count/' in k or ':few/' in k for k in empty)
    assert all(v == 1.0 for k, v in empty.items() if ':few/' in k)


@pytest.mark.slow
def test_perfect_detector_scores_100_on_small_slices(kitti):
    root = kitti['root']
    results = gt_predictions(kitti['ds'], 'perfect')
    m = _metric(dict(
        type='SliceMetric',
        metric=dict(type='KittiCPUMetric',
                    ann_file=osp.join(root, 'kitti_infos_val.pkl')),
        slices=[dict(type='SliceFile',
                     path=osp.join(root, 'frame_modes.json'))]))
    m.results = copy.deepcopy(results)
    metrics = {k[len(PREFIX) + 1:]: v
               for k, v in m.evaluate(len(results)).items()}
    n_dense = 0
    for unit in ('all', 'day', 'dusk', 'fog'):
        for cls in KITTI_CLASSES:
            for diff in ('easy', 'moderate', 'hard'):
                n = metrics[f'@{unit}:count/{cls}_{diff}']
                assert metrics[f'@{unit}:few/{cls}_{diff}'] == float(n < 10)
                for box in ('3D', 'BEV'):
                    key = (f'pred_instances_3d/KITTI/{cls}_{box}_AP40_'
                           f'{diff}_strict')
                    dense = metrics.get(f'@{unit}:dense/{key}')
                    if n == 0:
                        assert dense is None
                        continue
                    assert dense == 100.0, (unit, key, n)
                    n_dense += 1
                    stock = metrics[key] if unit == 'all' else \
                        metrics[f'@{unit}/{key}']
                    if n <= 40:  # kitti_eval's cap: (n - 1) / 40
                        assert stock == pytest.approx((n - 1) / 40 * 100)
    assert n_dense > 30
    # the rare slice really is small: the stock AP could not show it
    assert metrics['@fog:count/num_samples'] >= 1
    fog_car = metrics['@fog:count/Car_moderate']
    assert 0 < fog_car < 10
    assert metrics['@fog/pred_instances_3d/KITTI/Car_3D_AP40_moderate_'
                   'strict'] < 30
    # Overall (the mean over classes) only where every class has ground
    # truth; then 100 for the perfect detector
    with_overall = 0
    for unit in ('all', 'day', 'dusk', 'fog'):
        key = (f'@{unit}:dense/pred_instances_3d/KITTI/Overall_3D_AP40_'
               'moderate')
        if all(metrics[f'@{unit}:count/{c}_moderate'] > 0
               for c in KITTI_CLASSES):
            assert metrics[key] == 100.0, unit
            with_overall += 1
        else:
            assert key not in metrics, unit
    assert with_overall >= 2


# ---------------------------------------------------------------- dense
def _car(x, z, score=None):
    """A KITTI camera-frame car (easy: unoccluded, tall 2D box)."""
    a = dict(name='Car', truncated=0.0, occluded=0, alpha=-0.2,
             bbox=[100.0 + 10 * x, 150.0, 180.0 + 10 * x, 230.0],
             dimensions=[3.9, 1.56, 1.6], location=[x, 1.65, z],
             rotation_y=0.1)
    if score is not None:
        a['score'] = score
    return a


def _annos(objs, with_score):
    keys = ['name', 'truncated', 'occluded', 'alpha', 'bbox', 'dimensions',
            'location', 'rotation_y'] + (['score'] if with_score else [])
    out = {}
    for k in keys:
        v = [o[k] for o in objs]
        shape = {'bbox': (0, 4), 'dimensions': (0, 3), 'location': (0, 3)}
        out[k] = np.array(v) if v else np.zeros(shape.get(k, (0, )))
    return out


def _interpolated_ap40(n, dets):
    """Independent: (1/40) sum_k max{P(r): r >= k/40}, from (score, is_tp)
    pairs; ties share one precision-recall point; with kitti_eval's
    convention that the precision at the highest recall reached also counts
    for the next recall point when that recall is not a multiple of 1/40."""
    dets = sorted(dets, key=lambda d: -d[0])
    points = []  # (recall, precision) at each distinct true-positive score
    for s in sorted({d[0] for d in dets if d[1]}, reverse=True):
        tp = sum(1 for d in dets if d[0] >= s and d[1])
        fp = sum(1 for d in dets if d[0] >= s and not d[1])
        points.append((tp / n, tp / (tp + fp)))
    if not points:
        return 0.0
    r_max = max(r for r, _ in points)
    total = 0.0
    extra = r_max < 1 and abs(40 * r_max - round(40 * r_max)) > 1e-9
    for k in range(1, 41):
        r = k / 40
        above = [p for rr, p in points if rr >= r - 1e-12]
        if above:
            total += max(above)
        elif extra:
            total += max(p for rr, p in points if rr >= r_max - 1e-12)
            extra = False
    return 100 * total / 40


@pytest.mark.parametrize('n,seed', [
    (1, 0), (3, 1), (7, 2), (13, 3),
    pytest.param(25, 4, marks=pytest.mark.slow),
    pytest.param(40, 5, marks=pytest.mark.slow)])
def test_dense_ap_is_the_interpolated_ap(n, seed):
    import mmdet3d_equity  # noqa: F401
    from mmdet3d_equity.evaluation.kitti_slices import KittiSliceAdapter
    rng = np.random.default_rng(seed)
    gts, dts, pairs = [], [], []
    left = n
    while left:
        k = int(min(left, rng.integers(1, 5)))
        left -= k
        g, d = [], []
        for j in range(k):
            x, z = -6.0 + 4.0 * j, 10.0 + 3 * j
            g.append(_car(x, z))
            if rng.random() < 0.8:  # detected (a 10 cm shift: IoU > 0.9)
                s = float(np.round(rng.uniform(0.1, 1.0), 1))  # ties
                c = _car(x + 0.1, z, s)
                c['rotation_y'] += 0.01
                d.append(c)
                pairs.append((s, True))
        for _ in range(int(rng.integers(0, 3))):  # false positives
            s = float(np.round(rng.uniform(0.05, 1.0), 1))
            d.append(_car(30.0 + 5 * rng.random(), 40.0, s))
            pairs.append((s, False))
        gts.append(_annos(g, False))
        dts.append(_annos(d, True))
    metric = _metric(dict(type='KittiCPUMetric', ann_file='unused.pkl'))
    adapter = KittiSliceAdapter(metric, dense=True, min_gt=10)
    adapter.classes = ['Car']
    adapter.gt, adapter.dt = gts, {'pred_instances_3d': dts}
    adapter.positives = adapter._count_positives(gts)
    assert adapter.positives.sum(0)[0].tolist() == [n, n, n]
    out = adapter.evaluate(list(range(len(gts))))
    key = 'pred_instances_3d/KITTI/Car_3D_AP40_moderate_strict'
    expected = _interpolated_ap40(n, pairs)
    assert out[('dense', key)] == pytest.approx(expected, abs=1e-3)
    if n < 40 and any(t for _, t in pairs):
        assert adapter.last_repeat >= 21 and adapter.last_repeat * n >= 61


def test_kitti_metric_without_cuda_is_refused_with_the_fix(tiny_kitti_root):
    import mmdet3d_equity  # noqa: F401
    from mmdet3d_equity.evaluation import SliceError, numba_cuda_available
    if numba_cuda_available():
        pytest.skip('numba CUDA available: KittiMetric works here')
    with pytest.raises(SliceError, match="use type='KittiCPUMetric'"):
        _metric(dict(type='SliceMetric', metric=dict(
            type='KittiMetric',
            ann_file=osp.join(tiny_kitti_root, 'kitti_infos_val.pkl'))))


def test_slice_file_of_other_ids_is_refused_at_build(tiny_kitti_root,
                                                     tmp_path):
    import mmdet3d_equity  # noqa: F401
    from mmdet3d_equity.evaluation import SliceError
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'slices': {'100000': 'fog', '100001': 'day'}}))
    with pytest.raises(SliceError, match='none of the 16 samples of .* is in '
                       'any slice of slice file'):
        _metric(dict(type='SliceMetric', slices=[dict(
            type='SliceFile', path=str(bad))], metric=dict(
            type='KittiCPUMetric',
            ann_file=osp.join(tiny_kitti_root, 'kitti_infos_val.pkl'))))


def test_tiny_kitti_config_evaluates_slices_of_the_frame_modes(
        tiny_kitti_root, monkeypatch):
    from mmengine.config import Config

    import mmdet3d_equity  # noqa: F401
    from mmdet3d_equity.evaluation import SliceMetric
    monkeypatch.setenv('EQUITY_TINY_KITTI', tiny_kitti_root)
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg = Config.fromfile(osp.join(
        repo, 'configs/tiny/pointpillars_tiny-kitti-3class.py'))
    m = _metric(cfg.val_evaluator)
    assert isinstance(m, SliceMetric) and m.prefix == PREFIX
    assert type(m.metric).__name__ == 'KittiCPUMetric'
    assert list(m.slices) == ['day', 'dusk', 'fog']
