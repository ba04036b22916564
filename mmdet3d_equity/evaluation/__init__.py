from .kitti_cpu_iou import (KittiCPUMetric, cpu_rotate_iou,  # noqa: F401
                            numba_cuda_available, rotate_iou_cpu_eval)
from .class_groups import LT3D_GROUPS, build_class_groups  # noqa: F401
from .slice_keys import (VARIANTS, MetricKey,  # noqa: F401
                         format_metric_key, parse_metric_key, slice_metrics,
                         whole_split_metrics)
from .slice_metric import SliceMetric  # noqa: F401
from .slice_sources import (SLICE_SOURCES, LikelihoodSlices,  # noqa: F401
                            SceneDescriptionSlices, SliceError, SliceFile,
                            likelihood_bins, read_slice_file,
                            scene_description_slices, write_slice_file)
