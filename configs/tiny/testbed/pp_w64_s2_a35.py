# Testbed trial (docs/testbed.md): stride-2 anchors (0.64 m grid) with the
# Pedestrian / Cyclist assigner thresholds of mmdet3d's SECOND 3-class KITTI
# config (positive 0.35, negative 0.2, min positive 0.2; Car unchanged).
_base_ = './pp_w64_s2.py'
_small = dict(type='Max3DIoUAssigner',
              iou_calculator=dict(type='mmdet3d.BboxOverlapsNearest3D'),
              pos_iou_thr=0.35, neg_iou_thr=0.2, min_pos_iou=0.2,
              ignore_iof_thr=-1)
model = dict(train_cfg=dict(assigner=[
    _small, _small,
    dict(type='Max3DIoUAssigner',
         iou_calculator=dict(type='mmdet3d.BboxOverlapsNearest3D'),
         pos_iou_thr=0.6, neg_iou_thr=0.45, min_pos_iou=0.45,
         ignore_iof_thr=-1)]))
