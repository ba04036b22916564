# CenterPoint-pillar nuScenes with both methods: DatasetEquity (per-sample
# Generalized Focal Loss weights, eta 0.3 as used for CenterPoint heads) and
# dynamic semantic-scale-balanced (per-class) heatmap weights. The lines below
# the _base_ are the _equity config's plus the SSB hook.
_base_ = 'mmdet3d::centerpoint/centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d.py'  # noqa: E501

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='data/nuscenes/equity_likelihoods.npz',
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [
    dict(type='EquityHook', loss=dict(
        type='GeneralizedFocalLoss', eta=0.3, gamma=5.0)),
    dict(type='SemanticScaleBalanceHook', warmup_epochs=5),
]
