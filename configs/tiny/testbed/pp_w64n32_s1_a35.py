# Testbed trial (docs/testbed.md): stride-1 anchors (0.32 m grid), narrow neck,
# SECOND-style Pedestrian / Cyclist assigner thresholds.
_base_ = './pp_w64n32_s1.py'
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
