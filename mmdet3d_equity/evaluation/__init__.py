"""Evaluation: SliceMetric (a stock metric on the whole split and on
slices), its dataset kinds (:data:`SLICE_DATASETS`), slice sources
(:data:`SLICE_SOURCES`), the metric-key grammar, the compact log line
(:class:`SliceLogProcessor`) and KittiCPUMetric."""
from .class_groups import LT3D_GROUPS, build_class_groups
from .kitti_cpu_iou import (
                            KittiCPUMetric,
                            cpu_rotate_iou,
                            numba_cuda_available,
                            rotate_iou_cpu_eval,
)
from .kitti_slices import KittiSliceAdapter
from .nuscenes_slices import NuScenesSliceAdapter
from .slice_keys import (
                            VARIANTS,
                            MetricKey,
                            format_metric_key,
                            parse_metric_key,
                            slice_metrics,
                            whole_split_metrics,
)
from .slice_kinds import SLICE_DATASETS, SliceDatasetKind
from .slice_log import SliceLogProcessor
from .slice_metric import SliceMetric
from .slice_sources import (
                            SLICE_SOURCES,
                            LikelihoodSlices,
                            SceneDescriptionSlices,
                            SliceError,
                            SliceFile,
                            likelihood_bins,
                            read_slice_file,
                            scene_description_slices,
                            write_slice_file,
)

__all__ = [
    'LT3D_GROUPS', 'build_class_groups', 'KittiCPUMetric', 'cpu_rotate_iou',
    'numba_cuda_available', 'rotate_iou_cpu_eval', 'KittiSliceAdapter',
    'NuScenesSliceAdapter', 'VARIANTS', 'MetricKey', 'format_metric_key',
    'parse_metric_key', 'slice_metrics', 'whole_split_metrics',
    'SLICE_DATASETS', 'SliceDatasetKind', 'SliceLogProcessor', 'SliceMetric',
    'SLICE_SOURCES', 'LikelihoodSlices', 'SceneDescriptionSlices',
    'SliceError', 'SliceFile', 'likelihood_bins', 'read_slice_file',
    'scene_description_slices', 'write_slice_file'
]
