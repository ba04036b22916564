from .kitti_cpu_iou import (install_cpu_rotate_iou,  # noqa: F401
                            rotate_iou_cpu_eval)
