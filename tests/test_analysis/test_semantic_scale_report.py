"""Report helpers of tools/semantic_scale.py: AP formats, correlations,
pipeline filtering, no silent overwrite, plots."""
import json
import os.path as osp

import pytest

from mmdet3d_equity.analysis.semantic_scale_report import (
    EvalResultError,
    load_per_class_ap,
    pearson,
)
from mmdet3d_equity.utils.fileio import atomic_write_json

CLASSES = ['Pedestrian', 'Cyclist', 'Car']


def test_ap_formats(tmp_path):
    simple = tmp_path / 'ap.json'
    simple.write_text(json.dumps({'Pedestrian': 10, 'Cyclist': 5.5,
                                  'Car': 70, 'extra': 1}))
    assert load_per_class_ap(str(simple), CLASSES) == {
        'Pedestrian': 10.0, 'Cyclist': 5.5, 'Car': 70.0}
    kitti = {f'Kitti metric/pred_instances_3d/KITTI/{c}_3D_AP40_'
             f'moderate_strict': v for c, v in zip(CLASSES, (1., 2., 3.))}
    kitti['Kitti metric/pred_instances_3d/KITTI/Car_3D_AP40_easy_strict'] = 9
    f = tmp_path / 'kitti.json'
    f.write_text(json.dumps(kitti))
    assert load_per_class_ap(str(f), CLASSES) == {
        'Pedestrian': 1.0, 'Cyclist': 2.0, 'Car': 3.0}
    nus = {}
    for c, base in (('car', 0.4), ('bus', 0.2)):
        for i, d in enumerate(('0.5', '1.0', '2.0', '4.0')):
            nus[f'NuScenes metric/pred_instances_3d_NuScenes/{c}_AP_dist_'
                f'{d}'] = base + 0.1 * i
    f = tmp_path / 'nus.jsonl'
    f.write_text('{"lr": 1}\n' + json.dumps(nus) + '\n')
    ap = load_per_class_ap(str(f), ['car', 'bus'])
    assert ap['car'] == pytest.approx(0.55) and ap['bus'] == pytest.approx(
        0.35)
    custom = tmp_path / 'c.json'
    custom.write_text(json.dumps({'m/ap_car': 1, 'm/ap_bus': 2}))
    assert load_per_class_ap(str(custom), ['car', 'bus'],
                             ap_key=r'ap_{cls}$') == {'car': 1.0, 'bus': 2.0}
    with pytest.raises(EvalResultError) as exc:
        load_per_class_ap(str(custom), ['car', 'truck'], ap_key=r'ap_{cls}$')
    assert str(exc.value) == (
        f"{custom}: --ap-key 'ap_{{cls}}$' matches no key of the classes "
        "['truck']; cannot find a per-class AP for every class "
        "['car', 'truck']")
    with pytest.raises(EvalResultError, match="has neither KITTI nor "
                       "nuScenes metrics"):
        load_per_class_ap(str(custom), ['car', 'bus'])
    with pytest.raises(EvalResultError, match='not found'):
        load_per_class_ap(str(tmp_path / 'none.json'), CLASSES)


def test_pearson_and_atomic_write(tmp_path):
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [1, 1, 1]) is None
    assert pearson([1, 2], [1, 2]) is None

    p = tmp_path / 'sub' / 'r.json'
    atomic_write_json(str(p), {'a': 1})
    assert json.loads(p.read_text()) == {'a': 1}
    assert [x.name for x in p.parent.iterdir()] == ['r.json']
    with pytest.raises(ValueError):
        atomic_write_json(str(p), {'a': float('nan')})
    assert json.loads(p.read_text()) == {'a': 1}  # old file intact


def test_an_undefined_correlation_says_why():
    from mmdet3d_equity.analysis.semantic_scale_report import pearson_undefined
    assert pearson_undefined([1, 2, 3], [2, 4, 7]) is None
    assert pearson_undefined([1, 2], [1, 2]) == \
        '2 class(es): a correlation needs at least 3 classes'
    assert pearson_undefined([0.0, 0.0, 0.0], [5, 9, 2], 'per-class AP',
                             'count') == (
        'per-class AP is 0 for every class: no variation to correlate (e.g. '
        'a checkpoint that detects nothing, or the metrics of another '
        'split)')
    assert pearson_undefined([1, 2, 3], [4, 4, 4], 'per-class AP', 'S') \
        == 'S is 4 for every class: no variation to correlate'
    assert pearson_undefined([1, float('nan'), 3], [1, 2, 3], 'AP') == \
        'AP is not finite for every class'


def test_tool_refuses_overwrite_and_filters_augmentation(tmp_path, capsys):
    from mmengine.config import Config
    from mmengine.logging import MMLogger

    from mmdet3d_equity.analysis.semantic_scale import measurement_dataset_cfg
    from mmdet3d_equity.cli import semantic_scale as tool
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg_path = osp.join(root, 'configs', 'tiny',
                        'pointpillars_tiny-kitti-3class_ssb.py')
    (tmp_path / 'semantic_scale.json').write_text('{}')
    with pytest.raises(SystemExit) as e:
        tool.main([cfg_path, 'none.pth', '--out-dir', str(tmp_path)])
    assert e.value.code == 2
    assert '--overwrite' in capsys.readouterr().err
    assert (tmp_path / 'semantic_scale.json').read_text() == '{}'
    cfg = Config.fromfile(cfg_path)
    ds = measurement_dataset_cfg(cfg, False, MMLogger.get_instance('t'))
    types = [t['type'] for t in ds.pipeline]
    assert types == ['LoadPointsFromFile', 'LoadAnnotations3D',
                     'PointsRangeFilter', 'ObjectRangeFilter',
                     'Pack3DDetInputs']
    ds = measurement_dataset_cfg(cfg, True, MMLogger.get_instance('t'))
    assert 'ObjectSample' in [t['type'] for t in ds.pipeline]
    with pytest.raises(SystemExit):
        tool.parse_args([cfg_path, 'x.pth', '--alpha', '0.5'])
    assert 'alpha (--alpha) must be a number >= 1' in capsys.readouterr().err


def test_plots_written(tmp_path):
    from mmdet3d_equity.visualization.semantic_scale_plots import (
        plot_count_vs_scale,
        plot_marginal_effect,
    )
    plot_count_vs_scale(CLASSES, [10, 3, 50], [5.0, 2.0, 7.0],
                        [0.8, 0.5, 1.5], str(tmp_path / 'a.png'))
    plot_marginal_effect({'Car': dict(sizes=[2, 4], mean=[1.0, 1.5],
                                      std=[0.1, 0.0]),
                          'Cyclist': dict(sizes=[], mean=[], std=[])},
                         str(tmp_path / 'b.png'))
    assert (tmp_path / 'a.png').read_bytes()[:4] == b'\x89PNG'
    assert (tmp_path / 'b.png').stat().st_size > 1000


def test_slice_metric_files_give_the_whole_split(tmp_path):
    """A SliceMetric metrics JSON: per-slice and dense keys of the same cell
    must not be averaged in (they match a loose per-class pattern)."""
    from mmdet3d_equity.evaluation.slice_keys import format_metric_key
    prefix = 'Kitti metric'
    metrics = {}
    for i, c in enumerate(CLASSES):
        for diff in ('easy', 'moderate', 'hard'):
            for iou, off in (('strict', 0.0), ('loose', 50.0)):
                name = f'pred_instances_3d/KITTI/{c}_3D_AP40_{diff}_{iou}'
                whole = 10.0 * (i + 1) + off + (diff == 'hard')
                metrics[format_metric_key(prefix, None, 'stock', name)] = \
                    whole
                metrics[format_metric_key(prefix, 'fog', 'stock', name)] = 99.
                metrics[format_metric_key(prefix, None, 'dense', name)] = 77.
                metrics[format_metric_key(prefix, 'fog', 'dense', name)] = 55.
    f = tmp_path / 'sliced.json'
    f.write_text(json.dumps(metrics))
    assert load_per_class_ap(str(f), CLASSES) == {
        'Pedestrian': 10.0, 'Cyclist': 20.0, 'Car': 30.0}
    assert load_per_class_ap(str(f), CLASSES,
                             metric='3D_AP40_hard_loose') == {
        'Pedestrian': 61.0, 'Cyclist': 71.0, 'Car': 81.0}
    with pytest.raises(EvalResultError) as exc:
        load_per_class_ap(str(f), CLASSES + ['Van'])
    assert str(exc.value) == (
        f"{f}: cannot find a per-class AP for every class ['Pedestrian', "
        "'Cyclist', 'Car', 'Van']: the metrics have none for ['Van'] "
        "(classes there: ['Car', 'Cyclist', 'Pedestrian'])")
