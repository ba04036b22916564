"""Adapter of ``CenterHead`` (CenterPoint)."""
from mmdet3d.models.dense_heads import CenterHead

from .base import HEAD_ADAPTERS, BEVHeadAdapter, UnsupportedHeadError
from .grad_scale import scale_grad_per_sample


@HEAD_ADAPTERS.register_module()
class CenterHeadAdapter(BEVHeadAdapter):
    """``forward`` -> a tuple over tasks of lists over levels of dicts of
    batch-first maps (``heatmap`` feeds ``task*.loss_heatmap``; ``reg``,
    ``height``, ``dim``, ``rot``, ``vel`` the channels of ``task*.loss_bbox``;
    ``iou`` ``task*.loss_iou``). The classification loss is called once per
    task on that task's channels. Object features: the head input (input of
    ``shared_conv``) at the BEV box centre."""

    head_class = CenterHead
    detectors = dict(CenterPoint='pts_bbox_head',
                     MVXTwoStageDetector='pts_bbox_head',
                     MVXFasterRCNN='pts_bbox_head',
                     DynamicMVXFasterRCNN='pts_bbox_head')
    terms = ('heatmap', 'reg', 'height', 'dim', 'rot', 'vel', 'iou')

    def present_terms(self, head):
        present = set()
        for task_head in head.task_heads:
            present.update(task_head.heads.keys())
        return tuple(t for t in self.terms if t in present)

    def scale_outputs(self, head, output, terms, w):
        if not isinstance(output, (tuple, list)):
            raise RuntimeError(
                f'CenterHead.forward returned {type(output).__name__}; '
                'expected a tuple over tasks')
        new_out = []
        for task_out in output:
            levels = []
            for ret in task_out:
                ret = dict(ret)
                for key in list(ret.keys()):
                    if key in terms:
                        ret[key] = scale_grad_per_sample(ret[key], w)
                    elif key not in self.terms:
                        raise UnsupportedHeadError(
                            f'CenterHead output {key!r} is not a known loss '
                            'term; per-sample weighting cannot tell whether '
                            'it is exact')
                levels.append(ret)
            new_out.append(levels)
        return type(output)(new_out) if isinstance(output, tuple) \
            else new_out

    def num_classes(self, head):
        return int(sum(head.num_classes))

    def class_tasks(self, head):
        # tasks in order, classes concatenated: CenterHead's label numbering
        return [int(n) for n in head.num_classes]
