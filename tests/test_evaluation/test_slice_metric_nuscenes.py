"""SliceMetric on nuScenes: every slice value equals the stock NuScenesMetric
run on a copy of the dataset whose val split holds only the slice's
samples; classes without ground truth are missing; LT3D class groups."""
import copy
import os.path as osp

import mmengine
import numpy as np
import pytest
from _slice_helpers import (
    NUS_CLASSES,
    build_val_dataset,
    gt_predictions,
    reduced_nuscenes_root,
    strip,
    subset_results,
)

PREFIX = 'NuScenes metric'
PRE = 'pred_instances_3d_NuScenes/'


def _metric(cfg):
    from mmdet3d.registry import METRICS
    m = METRICS.build(cfg)
    m.dataset_meta = dict(classes=NUS_CLASSES, version='v1.0-mini')
    return m


def _stock(root, results, positions):
    m = _metric(dict(type='NuScenesMetric', data_root=root,
                     ann_file=osp.join(root, 'nuscenes_infos_val.pkl')))
    return m.compute_metrics(subset_results(results, positions))


def test_slices_equal_stock_metric_on_reduced_tables(tiny_nus_root,
                                                     tmp_path):
    import mmdet3d_equity  # noqa: F401
    from mmdet3d_equity.evaluation import write_slice_file
    root = tiny_nus_root
    ds = build_val_dataset('nuscenes', root + '/')
    results = gt_predictions(ds, 'noisy', seed=2)
    infos = mmengine.load(osp.join(root, 'nuscenes_infos_val.pkl'))
    bicycle = infos['metainfo']['categories']['bicycle']
    no_bicycle = [d['token'] for d in infos['data_list'] if not any(
        i['bbox_label_3d'] == bicycle for i in d['instances'])]
    assert 0 < len(no_bicycle) < len(infos['data_list'])
    extra = write_slice_file(str(tmp_path / 'extra.json'),
                             {t: ['no_bicycle'] for t in no_bicycle})
    m = _metric(dict(
        type='SliceMetric', groups='lt3d',
        metric=dict(type='NuScenesMetric', data_root=root,
                    ann_file=osp.join(root, 'nuscenes_infos_val.pkl')),
        slices=[dict(type='SliceFile',
                     path=osp.join(root, 'frame_modes.json')),
                dict(type='SceneDescriptionSlices', data_root=root,
                     version='v1.0-mini', prefix='scene_'),
                dict(type='SliceFile', path=extra)]))
    m.results = copy.deepcopy(results)
    metrics = {k[len(PREFIX) + 1:]: v
               for k, v in m.evaluate(len(results)).items()}
    whole = _stock(root, results, range(len(results)))
    assert {k: v for k, v in metrics.items() if not k.startswith('@')} \
        == whole

    tokens = [d['token'] for d in mmengine.load(osp.join(
        root, 'nuscenes_infos_val.pkl'))['data_list']]
    checked_missing = 0
    for name, members in m.slices.items():
        positions = [i for i, t in enumerate(tokens) if t in members]
        assert metrics[f'@{name}:count/num_samples'] == len(positions)
        if not positions:
            assert not strip(metrics, name)
            continue
        sub = str(tmp_path / name)
        assert reduced_nuscenes_root(root, [tokens[i] for i in positions],
                                     sub) == positions
        ref = _stock(sub, results, positions)
        mine = strip(metrics, name)
        counts = {c: metrics[f'@{name}:count/{c}'] for c in NUS_CLASSES}
        for key, value in ref.items():
            cls = [c for c in NUS_CLASSES if key.startswith(PRE + c + '_')]
            present = counts[cls[0]] > 0 if cls else min(counts.values()) > 0
            if present:
                assert mine[key] == value, (name, key)
            else:
                assert key not in mine
                checked_missing += 1
        assert set(mine) <= set(ref)
        # LT3D groups: Many = car, pedestrian; Medium = bicycle; Few: none
        class_ap = {c: np.mean([ref[f'{PRE}{c}_AP_dist_{d}'] for d in
                                ('0.5', '1.0', '2.0', '4.0')])
                    for c in NUS_CLASSES if counts[c] > 0}
        many = [class_ap[c] for c in ('car', 'pedestrian') if c in class_ap]
        if many:
            assert metrics[f'@{name}:group/Many_mAP'] == pytest.approx(
                np.mean(many), abs=2e-4)
        assert ('bicycle' in class_ap) == (
            f'@{name}:group/Medium_mAP' in metrics)
        assert f'@{name}:group/Few_mAP' not in metrics
        assert metrics[f'@{name}:count/classes_Few'] == 0
    # a class without ground truth is missing, never 0 (the stock metric
    # reports 0 AP for it and 0-including means)
    assert checked_missing > 0 and metrics['@no_bicycle:count/bicycle'] == 0
    assert not [k for k in strip(metrics, 'no_bicycle')
                if 'bicycle' in k or k.endswith(('mAP', 'NDS'))]
    assert metrics['@scene_night:count/num_samples'] > 0
    assert metrics['@scene_day:count/num_samples'] > 0
    assert metrics['@all:group/Many_mAP'] == pytest.approx(np.mean(
        [np.mean([whole[f'{PRE}{c}_AP_dist_{d}'] for d in
                  ('0.5', '1.0', '2.0', '4.0')]) for c in
         ('car', 'pedestrian')]), abs=2e-4)


def test_class_groups_rules(tiny_nus_root, tmp_path):
    from mmdet3d_equity.evaluation.class_groups import (
        build_class_groups,
        check_groups_cover,
        count_training_objects,
        lt3d_groups,
    )
    from mmdet3d_equity.evaluation.slice_sources import SliceError
    g = lt3d_groups()
    assert g['Many'][:5] == ['car', 'truck', 'adult', 'traffic_cone',
                             'barrier'] and 'pedestrian' in g['Many']
    assert 'bicycle' in g['Medium'] and 'stroller' in g['Few']
    ann = osp.join(tiny_nus_root, 'nuscenes_infos_train.pkl')
    counts = count_training_objects(ann)
    # independent count from the infos
    data = mmengine.load(ann)
    names = {v: k for k, v in data['metainfo']['categories'].items()}
    ref = {}
    for info in data['data_list']:
        for inst in info['instances']:
            if inst['bbox_label_3d'] >= 0:
                n = names[inst['bbox_label_3d']]
                ref[n] = ref.get(n, 0) + 1
    assert {k: v for k, v in counts.items() if v} == ref
    car, ped, bic = ref['car'], ref['pedestrian'], ref['bicycle']
    assert car > ped > bic
    groups = build_class_groups(dict(type='counts', ann_file=ann,
                                     many=ped + 1, few=bic + 1))
    assert 'car' in groups['Many'] and 'pedestrian' in groups['Medium'] \
        and 'bicycle' in groups['Few']
    explicit = build_class_groups(dict(Common=['car'], Rare=['bicycle']))
    with pytest.raises(SliceError, match=r"class\(es\) \['pedestrian'\] are "
                       'in no class group'):
        check_groups_cover(explicit, NUS_CLASSES)
    for bad, msg in [(dict(A=['car'], B=['car']), "'car' is in groups"),
                     (dict(type='counts', ann_file=ann, many=5, few=10),
                      'few <= many'),
                     (dict(type='other'), "unknown class-group type"),
                     ('lt4d', 'groups must be')]:
        with pytest.raises(SliceError, match=msg):
            build_class_groups(bad)
    # no default thresholds: a counts group without them is refused
    with pytest.raises(SliceError) as exc:
        build_class_groups(dict(type='counts', ann_file=ann, many=50))
    assert str(exc.value) == (
        "groups=dict(type='counts', ann_file=TRAIN_INFOS, many=N, few=M) "
        "needs all three keys; got keys ['ann_file', 'many'] (missing "
        "['few']). Choose the thresholds for your data, e.g. many=50000, "
        'few=5000 on nuScenes trainval (tens on a tiny dataset)')


def test_the_whole_split_is_evaluated_once_without_groups(tiny_nus_root,
                                                          monkeypatch):
    """Without class groups, the whole split's values are the wrapped
    metric's: the devkit evaluation runs once for it, plus once per slice."""
    from nuscenes.eval.detection.evaluate import DetectionEval

    import mmdet3d_equity  # noqa: F401
    root = tiny_nus_root
    ds = build_val_dataset('nuscenes', root + '/')
    results = gt_predictions(ds, 'noisy', seed=2)
    m = _metric(dict(
        type='SliceMetric',
        metric=dict(type='NuScenesMetric', data_root=root,
                    ann_file=osp.join(root, 'nuscenes_infos_val.pkl')),
        slices=[dict(type='SceneDescriptionSlices', data_root=root,
                     version='v1.0-mini', prefix='scene_')]))
    calls = []
    evaluate = DetectionEval.evaluate
    monkeypatch.setattr(DetectionEval, 'evaluate',
                        lambda self: calls.append(1) or evaluate(self))
    m.results = copy.deepcopy(results)
    metrics = m.evaluate(len(results))
    nonempty = [n for n in m.slices
                if metrics[f'{PREFIX}/@{n}:count/num_samples'] > 0]
    assert nonempty and len(calls) == 1 + len(nonempty)
