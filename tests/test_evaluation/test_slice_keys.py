"""The SliceMetric key grammar: parse / format round trips, whole-split keys
untouched, clear errors for malformed keys."""
import pytest

from mmdet3d_equity.evaluation.slice_keys import (
    MetricKey,
    check_slice_name,
    format_metric_key,
    parse_metric_key,
    slice_metrics,
    whole_split_metrics,
)

W = 'pred_instances_3d/KITTI/Car_3D_AP40_moderate_strict'


@pytest.mark.parametrize('key,parsed', [
    (f'Kitti metric/{W}', MetricKey('Kitti metric', None, 'stock', W)),
    (f'Kitti metric/@fog/{W}', MetricKey('Kitti metric', 'fog', 'stock', W)),
    (f'Kitti metric/@fog:dense/{W}',
     MetricKey('Kitti metric', 'fog', 'dense', W)),
    (f'Kitti metric/@all:dense/{W}',
     MetricKey('Kitti metric', None, 'dense', W)),
    ('Kitti metric/@p_rare:count/Car_moderate',
     MetricKey('Kitti metric', 'p_rare', 'count', 'Car_moderate')),
    ('NuScenes metric/@scene_night:few/car',
     MetricKey('NuScenes metric', 'scene_night', 'few', 'car')),
    ('NuScenes metric/@all:group/Many_mAP',
     MetricKey('NuScenes metric', None, 'group', 'Many_mAP')),
    ('NuScenes metric/pred_instances_3d_NuScenes/NDS',
     MetricKey('NuScenes metric', None, 'stock',
               'pred_instances_3d_NuScenes/NDS')),
    ('time', MetricKey('', None, 'stock', 'time')),
])
def test_parse_and_format_round_trip(key, parsed):
    assert parse_metric_key(key) == parsed
    assert format_metric_key(*parsed) == key


@pytest.mark.parametrize('key,msg', [
    (f'K/@fog:bogus/{W}', "unknown variant 'bogus'"),
    (f'K/@fog:stock/{W}', "unknown variant 'stock'"),
    ('K/@fog', 'nothing after the slice component'),
    (f'K/@all/{W}', 'whole-split values of the wrapped metric carry no'),
    (f'K/@a b/{W}', "bad slice name 'a b'"),
])
def test_malformed_keys_are_errors(key, msg):
    with pytest.raises(ValueError, match=msg):
        parse_metric_key(key)


@pytest.mark.parametrize('name', ['all', 'a/b', 'x:y', '@fog', '', 'a b'])
def test_invalid_slice_names(name):
    with pytest.raises(ValueError, match='slice'):
        check_slice_name(name, 'test')


def test_whole_split_and_slice_views():
    metrics = {f'K/{W}': 50.0, f'K/@fog/{W}': 7.5,
               f'K/@fog:dense/{W}': 80.0, f'K/@all:dense/{W}': 90.0,
               'K/@fog:count/num_samples': 2.0, 'time': 0.1}
    assert whole_split_metrics(metrics) == {f'K/{W}': 50.0, 'time': 0.1}
    assert slice_metrics(metrics) == {W: 50.0}
    assert slice_metrics(metrics, 'fog') == {W: 7.5}
    assert slice_metrics(metrics, 'fog', 'dense') == {W: 80.0}
    assert slice_metrics(metrics, None, 'dense') == {W: 90.0}
    assert slice_metrics(metrics, 'fog', 'count') == {'num_samples': 2.0}
