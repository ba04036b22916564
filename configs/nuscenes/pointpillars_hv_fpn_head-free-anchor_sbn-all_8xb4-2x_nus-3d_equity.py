# DatasetEquity on top of the stock mmdet3d FreeAnchor (PointPillars FPN)
# config. mmdet3d 1.4's negative bag loss uses the last sample's class
# probabilities for the whole batch (docs/equity_training.md): that term is
# weighted by the last sample's weight. SSB does not apply (the head never
# calls its loss_cls). Only the lines below the _base_ differ.
# The likelihood file is written by
#   python tools/compute_likelihoods.py THIS_CONFIG \
#       --out data/nuscenes/equity_likelihoods.npz
_base_ = 'mmdet3d::free_anchor/pointpillars_hv_fpn_head-free-anchor_sbn-all_8xb4-2x_nus-3d.py'  # noqa: E501

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='data/nuscenes/equity_likelihoods.npz',
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [dict(type='EquityHook', loss=dict(
    type='GeneralizedFocalLoss', eta=1.0, gamma=5.0))]
