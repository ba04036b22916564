"""A compact log line for runs evaluated with :class:`~.slice_metric.
SliceMetric`.

MMEngine logs every metric of an evaluation in one line; with slices that
is hundreds of keys (753 on the tiny KITTI config, ~58,000 characters).
:class:`SliceLogProcessor` logs the whole-split keys of the wrapped metric
only and says how many slice keys it left out; SliceMetric's table shows
them per slice, and the metrics JSON (``tools/test.py``) and the
visualizer backends (TensorBoard, ``vis_data/scalars.json``) keep every
key. Switch it on in the config::

    log_processor = dict(type='SliceLogProcessor', window_size=5)
"""
from typing import Tuple

from mmdet3d.registry import LOG_PROCESSORS
from mmengine.runner import LogProcessor

from .slice_keys import parse_metric_key


def _is_slice_key(name: str) -> bool:
    key = name.split('/', 1)[1] if name.startswith(('val/', 'test/')) \
        else name
    try:
        p = parse_metric_key(key)
    except ValueError:
        return False
    return p.slice is not None or p.variant != 'stock'


def compact_log_line(log_str: str) -> Tuple[str, int]:
    """``log_str`` (MMEngine's ``name: value`` items joined by two spaces)
    without the SliceMetric slice keys; returns (line, number left out)."""
    parts = log_str.split('  ')
    kept, dropped = [], 0
    for part in parts:
        name, sep, _ = part.partition(': ')
        if sep and _is_slice_key(name):
            dropped += 1
            continue
        kept.append(part)
    line = '  '.join(kept)
    if dropped:
        line += (f'  (+{dropped} SliceMetric slice keys: see its table '
                 'above and the metrics JSON)')
    return line, dropped


@LOG_PROCESSORS.register_module()
class SliceLogProcessor(LogProcessor):
    """:class:`mmengine.runner.LogProcessor` whose evaluation log line
    leaves out SliceMetric's slice keys (module docstring); the returned
    tag (what the metrics JSON and the visualizer get) is unchanged."""

    def get_log_after_epoch(self, runner, batch_idx: int, mode: str,
                            with_non_scalar: bool = False):
        tag, log_str = super().get_log_after_epoch(runner, batch_idx, mode,
                                                   with_non_scalar)
        return tag, compact_log_line(log_str)[0]
