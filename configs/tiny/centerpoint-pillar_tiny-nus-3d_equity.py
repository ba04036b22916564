# DatasetEquity on the tiny CenterPoint-pillar / tiny nuScenes CPU config:
# the lines below the _base_ are the whole difference to the baseline.
# Likelihoods are keyed by sample token; the file lives next to the tiny data
# (EQUITY_TINY_NUS, as in the base config); create it with
#   python tools/compute_likelihoods.py \
#       configs/tiny/centerpoint-pillar_tiny-nus-3d_equity.py \
#       --out data/tiny_nuscenes/equity_likelihoods.npz
# or point to another file with
#   --cfg-options train_dataloader.dataset.likelihood_file=PATH
# (eta = 0.3 as the paper used for the CenterPoint head; CBGSDataset stays
#  inside the wrapper.)
_base_ = './centerpoint-pillar_tiny-nus-3d.py'

custom_imports = dict(imports=['mmdet3d_equity'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(
    _delete_=True, type='EquityDataset',
    likelihood_file='{{$EQUITY_TINY_NUS:data/tiny_nuscenes}}/equity_likelihoods.npz',  # noqa: E501
    dataset={{_base_.train_dataloader.dataset}}))
custom_hooks = [dict(type='EquityHook', loss=dict(
    type='GeneralizedFocalLoss', eta=0.3, gamma=5.0))]
