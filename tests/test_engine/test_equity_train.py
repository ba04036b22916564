"""End to end: tools/train.py (in-process) with the tiny equity config on
CPU; the weights are logged; the checkpoint loads into the plain
(non-equity) tiny model."""
import glob
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from _tool_helpers import REPO, call_tool, last_run_log

EQ_CFG = osp.join(REPO, 'configs', 'tiny',
                  'pointpillars_tiny-kitti-3class_equity.py')
BASE_CFG = osp.join(REPO, 'configs', 'tiny',
                    'pointpillars_tiny-kitti-3class.py')


NUM_FRAMES = 4  # a subset of the tiny train split keeps the run short


def write_tiny_likelihoods(cfg, path, seed=0):
    """Likelihoods for the leaf train dataset's own identities."""
    from mmdet3d.registry import DATASETS
    from mmdet3d.utils import register_all_modules

    from mmdet3d_equity.utils import (
        build_record,
        index_identities,
        save_likelihood_file,
    )
    register_all_modules(init_default_scope=True)
    leaf = cfg.train_dataloader.dataset
    while 'dataset' in leaf:
        leaf = leaf.dataset
    leaf = dict(leaf, pipeline=[], indices=NUM_FRAMES)
    ds = DATASETS.build(leaf)
    ids = sorted(set(index_identities(ds).tolist()), key=int)
    gen = np.random.default_rng(seed)
    lik = gen.uniform(0, 1, len(ids))
    lik[0] = 1.0
    rec = build_record(
        ids, lik, np.arange(len(ids)), np.ones(len(ids), dtype=np.int64),
        id_key='sample_idx',
        dataset=dict(type='KittiDataset', ann_file=ds.ann_file,
                     num_samples=len(ids), split='train'),
        embedder=dict(type='test-random'), reducer=None,
        clusterer=dict(type='test-random'), likelihood_def='largest')
    save_likelihood_file(rec, path, overwrite=True)
    return dict(zip(ids, lik))


@pytest.mark.slow
def test_tiny_equity_config_trains_on_cpu(tiny_kitti_root, tmp_path,
                                          monkeypatch):
    from mmengine.config import Config
    monkeypatch.setenv('EQUITY_TINY_KITTI', tiny_kitti_root)
    cfg = Config.fromfile(EQ_CFG)
    assert cfg.train_dataloader.dataset.type == 'EquityDataset'
    lik_path = str(tmp_path / 'equity_likelihoods.npz')
    lik = write_tiny_likelihoods(cfg, lik_path)
    work = str(tmp_path / 'work')
    rc = call_tool('train', [
        EQ_CFG, '--work-dir', work, '--cfg-options',
        f'train_dataloader.dataset.likelihood_file={lik_path}',
        f'train_dataloader.dataset.dataset.dataset.indices={NUM_FRAMES}',
        'train_dataloader.batch_size=2',
        'train_cfg.max_epochs=1', 'train_cfg.val_begin=100',
        'default_hooks.logger.interval=1'
    ], dict(EQUITY_TINY_KITTI=tiny_kitti_root))
    assert rc == 0, f'tools/train.py exited with {rc!r}'
    out = last_run_log(work)
    assert 'EquityHook: exact per-sample weighting of Anchor3DHead' in out
    assert 'EquityDataset: ' in out
    # per-iteration weights in the scalar log (what TensorBoard also gets)
    scalars = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    assert scalars, os.listdir(work)
    rows = [json.loads(line) for line in open(scalars[0])]
    means = [r['equity_weight_mean'] for r in rows
             if 'equity_weight_mean' in r]
    assert means
    w_all = (1.0 + (1 - np.array(list(lik.values())))**5) / 2.0
    for r in rows:
        if 'equity_weight_min' in r:
            assert w_all.min() - 1e-6 <= r['equity_weight_min'] <= \
                r['equity_weight_mean'] <= r['equity_weight_max'] <= \
                w_all.max() + 1e-6
    # the checkpoint is a plain mmdet3d checkpoint of the base model
    ckpt = glob.glob(osp.join(work, 'epoch_1.pth'))
    assert ckpt
    from mmdet3d.registry import MODELS
    base = Config.fromfile(BASE_CFG)
    model = MODELS.build(base.model)
    # (torch >= 2.6 defaults to weights_only=True, which refuses mmengine's
    # message-hub objects in the checkpoint's meta)
    state = torch.load(ckpt[0], map_location='cpu', weights_only=False)
    assert set(state['state_dict']) == set(model.state_dict())
    model.load_state_dict(state['state_dict'], strict=True)


@pytest.mark.slow
def test_tiny_nuscenes_wrapper_uses_tokens(tiny_nus_root, tmp_path,
                                           monkeypatch):
    """Real NuScenesDataset + CBGSDataset + Pack3DDetInputs: the packed
    sample only carries sample_idx; the wrapper maps it to the token."""
    from mmdet3d.registry import DATASETS
    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config

    from mmdet3d_equity.utils import (
        build_record,
        index_identities,
        save_likelihood_file,
    )
    register_all_modules(init_default_scope=True)
    monkeypatch.setenv('EQUITY_TINY_NUS', tiny_nus_root)
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'tiny',
                                   'centerpoint-pillar_tiny-nus-3d_equity.py'))
    leaf_cfg = cfg.train_dataloader.dataset.dataset.dataset
    leaf = DATASETS.build(dict(leaf_cfg, pipeline=[]))
    tokens = sorted(set(index_identities(leaf).tolist()))
    assert all(not t.isdigit() for t in tokens)
    lik = np.linspace(0, 1, len(tokens))
    rec = build_record(
        tokens, lik, np.arange(len(tokens)), np.ones(len(tokens), int),
        id_key='token', dataset=dict(type='NuScenesDataset'),
        embedder=dict(type='t'), reducer=None, clusterer=dict(type='t'),
        likelihood_def='largest')
    path = save_likelihood_file(rec, str(tmp_path / 'nus.npz'))
    ds_cfg = dict(cfg.train_dataloader.dataset, likelihood_file=path)
    ds = DATASETS.build(ds_cfg)
    ds.claim('inspection', 'test')
    table = dict(zip(tokens, lik))
    for i in range(3):
        meta = ds[i]['data_samples'].metainfo
        assert 'token' not in meta
        own = leaf.get_data_info(int(meta['sample_idx']))['token']
        assert meta['equity_id'] == own
        assert meta['equity_likelihood'] == table[own]
        assert 'equity_weight' not in meta  # W is the hook's GFL's


def _kitti_copy(src, dst, folder, grow=None):
    """``dst``: the tiny KITTI root as links to ``src``, its point-cloud
    ``folder`` (under training/) copied; ``grow``: a point-cloud file name
    that gets one more point."""
    import shutil
    os.makedirs(osp.join(dst, 'training'))
    for name in os.listdir(src):
        if name != 'training':
            os.symlink(osp.join(src, name), osp.join(dst, name))
    for name in os.listdir(osp.join(src, 'training')):
        if name != folder:
            os.symlink(osp.join(src, 'training', name),
                       osp.join(dst, 'training', name))
    shutil.copytree(osp.join(src, 'training', folder),
                    osp.join(dst, 'training', folder))
    if grow is not None:
        with open(osp.join(dst, 'training', folder, grow), 'ab') as f:
            f.write(np.zeros(4, np.float32).tobytes())
    return dst + '/'


def test_likelihoods_of_other_kitti_data_with_the_same_ids_are_refused(
        tiny_kitti_root, tmp_path, monkeypatch):
    """Every KITTI-format dataset numbers its frames from 000000: a file
    scored on one data root is refused on another whose infos are the same
    but whose point clouds differ; the same data moved is accepted."""
    from mmdet3d.registry import DATASETS
    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config

    from mmdet3d_equity.utils import (
        LikelihoodFileError,
        build_record,
        index_identities,
        samples_fingerprint,
        save_likelihood_file,
    )
    register_all_modules(init_default_scope=True)
    monkeypatch.setenv('EQUITY_TINY_KITTI', tiny_kitti_root)
    leaf_cfg = Config.fromfile(EQ_CFG).train_dataloader.dataset
    while 'dataset' in leaf_cfg:
        leaf_cfg = leaf_cfg.dataset
    load = [t for t in leaf_cfg.pipeline if t.type == 'LoadPointsFromFile']
    leaf_cfg = dict(leaf_cfg, pipeline=load, indices=NUM_FRAMES)
    scored = DATASETS.build(leaf_cfg)  # what the scorer records
    ids = sorted(set(index_identities(scored).tolist()), key=int)
    rec = build_record(
        ids, np.linspace(0, 1, len(ids)), np.arange(len(ids)),
        np.ones(len(ids), int), id_key='sample_idx',
        dataset=dict(type='KittiDataset', data_root=scored.data_root,
                     ann_file=scored.ann_file,
                     samples_fingerprint=samples_fingerprint(scored)),
        embedder=dict(type='t'), reducer=None, clusterer=dict(type='t'),
        likelihood_def='largest')
    path = save_likelihood_file(rec, str(tmp_path / 'lik.npz'))

    def wrapper(root):
        ds = DATASETS.build(dict(type='EquityDataset', likelihood_file=path,
                                 dataset=dict(leaf_cfg, data_root=root)))
        ds.claim('inspection', 'test')
        return ds

    wrapper(scored.data_root)
    first = scored.get_data_info(0)['lidar_points']['lidar_path']
    folder = osp.basename(osp.dirname(first))  # velodyne_reduced
    other = _kitti_copy(tiny_kitti_root, str(tmp_path / 'other'), folder,
                        osp.basename(first))
    with pytest.raises(LikelihoodFileError) as e:
        wrapper(other)
    msg = str(e.value)
    assert msg.startswith(f'likelihood file {path} belongs to other data: '
                          f'it was computed for data_root '
                          f'{scored.data_root!r}')
    assert f"the train dataset reads data_root {other!r}" in msg
    assert "the samples' point-cloud files differ" in msg
    moved = _kitti_copy(tiny_kitti_root, str(tmp_path / 'moved'), folder)
    assert wrapper(moved).likelihood_of(ids[0]) == 0.0
