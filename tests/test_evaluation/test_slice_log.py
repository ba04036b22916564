"""SliceLogProcessor: the evaluation log line keeps the wrapped metric's
whole-split keys and drops SliceMetric's slice keys (counted), while the
tag (metrics JSON, visualizer) keeps every key."""
from mmdet3d.registry import LOG_PROCESSORS
from mmengine.runner import LogProcessor

from mmdet3d_equity.evaluation import SliceLogProcessor, format_metric_key
from mmdet3d_equity.evaluation.slice_log import compact_log_line

CAR = 'pred_instances_3d/KITTI/Car_3D_AP40_moderate_strict'


def _keys():
    whole = [format_metric_key('Kitti metric', None, 'stock', CAR)]
    sliced = [format_metric_key('Kitti metric', 'fog', 'stock', CAR),
              format_metric_key('Kitti metric', 'fog', 'dense', CAR),
              format_metric_key('Kitti metric', None, 'count',
                                'num_samples'),
              format_metric_key('Kitti metric', 'fog', 'few', 'Car_easy')]
    return whole, sliced


def test_compact_line_keeps_whole_split_keys_only():
    whole, sliced = _keys()
    items = [f'{k}: 1.0000' for k in whole + sliced] + ['data_time: 0.0100',
                                                       'time: 0.2000']
    line = 'Epoch(val) [1][8/8]    ' + '  '.join(items)
    out, dropped = compact_log_line(line)
    assert dropped == len(sliced)
    assert out.startswith('Epoch(val) [1][8/8]    ')
    for k in whole:
        assert f'{k}: 1.0000' in out
    for k in sliced:
        assert k not in out
    assert 'data_time: 0.0100' in out and 'time: 0.2000' in out
    assert out.endswith(f'(+{len(sliced)} SliceMetric slice keys: see its '
                        'table above and the metrics JSON)')
    # a line without slice keys is unchanged
    plain = 'Epoch(val) [1][8/8]    ' + '  '.join(items[:1] + items[-2:])
    assert compact_log_line(plain) == (plain, 0)


def test_processor_returns_the_full_tag(monkeypatch):
    whole, sliced = _keys()
    tag = {f'val/{k}': 1.0 for k in whole + sliced}
    line = 'Epoch(val) [1][8/8]    ' + '  '.join(
        f'{k}: 1.0000' for k in tag)

    def stock(self, runner, batch_idx, mode, with_non_scalar=False):
        return dict(tag), line
    monkeypatch.setattr(LogProcessor, 'get_log_after_epoch', stock)
    proc = LOG_PROCESSORS.build(dict(type='SliceLogProcessor'))
    assert isinstance(proc, SliceLogProcessor)
    got_tag, got_line = proc.get_log_after_epoch(None, 8, 'val')
    assert got_tag == tag
    assert got_line == compact_log_line(line)[0]
    assert len(got_line) < len(line)
