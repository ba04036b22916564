"""End-to-end appearance scoring on the tiny synthetic datasets.

Small models to stay fast on CPU: a randomly initialised ResNet-18 at
128 x 64 for images, the tiny PointPillars (random init, saved locally) for
the detector path.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

from mmdet3d_equity.scoring.clustering import ScoringError
from mmdet3d_equity.utils import load_likelihood_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KITTI_CFG = osp.join(REPO, 'configs/tiny/pointpillars_tiny-kitti-3class.py')
NUS_CFG = osp.join(REPO, 'configs/tiny/centerpoint-pillar_tiny-nus-3d.py')
R18 = dict(type='mmdet.ResNet', depth=18, out_indices=(3, ))
IMG = dict(backbone=R18, input_size=(128, 64), batch_size=16)


def _modes(root):
    with open(osp.join(root, 'frame_modes.json')) as f:
        return json.load(f)


def assert_rare_low(record, root):
    fm = _modes(root)
    rare, modes, split = fm['rare_mode'], fm['modes'], fm['split']
    ids = record['sample_ids']
    assert all(split[s] == 'train' for s in ids), 'val samples were scored'
    assert len(ids) == sum(v == 'train' for v in split.values())
    lik = np.asarray(record['likelihood'])
    is_rare = np.array([modes[s] == rare for s in ids])
    assert is_rare.any() and (~is_rare).any()
    assert np.median(lik[is_rare]) < 0.5 * np.median(lik[~is_rare]), (
        lik[is_rare], np.median(lik[~is_rare]))


@pytest.fixture(scope='module')
def kitti_env(tiny_kitti_root):
    old = os.environ.get('EQUITY_TINY_KITTI')
    os.environ['EQUITY_TINY_KITTI'] = tiny_kitti_root
    yield tiny_kitti_root
    if old is None:
        os.environ.pop('EQUITY_TINY_KITTI', None)
    else:
        os.environ['EQUITY_TINY_KITTI'] = old


@pytest.fixture(scope='module')
def image_run(kitti_env, tmp_path_factory):
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    out = str(tmp_path_factory.mktemp('lik_img') / 'lik.npz')
    rec = compute_likelihoods(KITTI_CFG, out, **IMG)
    return out, rec


@pytest.mark.slow
def test_image_embedder_rare_mode_low(image_run, kitti_env):
    out, rec = image_run
    assert_rare_low(rec, kitti_env)
    loaded = load_likelihood_file(out)
    assert loaded['id_key'] == 'sample_idx'
    # the frame numbers of the info file, not list positions
    import mmengine
    infos = mmengine.load(osp.join(kitti_env, 'kitti_infos_train.pkl'))
    assert loaded['sample_ids'] == [str(i['sample_idx'])
                                    for i in infos['data_list']]
    assert loaded['embedder']['type'] == 'image_backbone'
    assert loaded['embedder']['pretrained'] is False
    assert loaded['embedder']['input_size'] == [128, 64]
    assert loaded['clusterer']['type'] == 'kmeans'
    assert loaded['clusterer']['random_state'] == 0
    assert loaded['reducer']['type'] == 'pca'
    assert loaded['aggregation'] == dict(cameras=['CAM2'], mode='single')
    assert loaded['dataset']['wrappers'] == ['RepeatDataset']
    # CSV + JSON summary + figures next to the file
    stem = out[:-4]
    with open(stem + '.csv') as f:
        lines = f.read().splitlines()
    assert lines[0] == 'sample_id,likelihood,cluster_id,cluster_size,weight'
    assert len(lines) == len(loaded['sample_ids']) + 1
    sid, p, c, s, w = lines[1].split(',')
    from mmdet3d_equity import equity_weight
    assert float(w) == pytest.approx(equity_weight(float(p), 1.0, 5.0))
    with open(stem + '_summary.json') as f:
        summ = json.load(f)
    assert summ['num_samples'] == len(loaded['sample_ids'])
    assert sum(summ['cluster_sizes']) == summ['num_samples']
    for name in ('projection', 'likelihood_hist', 'weight_curve',
                 'rare_clusters', 'common_clusters'):
        assert osp.getsize(osp.join(stem + '_figures', name + '.png')) > 1000
    # embeddings cached
    assert len(os.listdir(osp.join(osp.dirname(out), 'embedding_cache'))) == 1


@pytest.mark.slow
def test_fixed_seed_identical_and_cache_reclusters(image_run, tmp_path):
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    out, rec = image_run
    # fresh embeddings (no cache), same seed -> identical file content
    again = compute_likelihoods(KITTI_CFG, str(tmp_path / 'b.npz'),
                                use_cache=False, figures=False, **IMG)
    assert again['sample_ids'] == rec['sample_ids']
    np.testing.assert_array_equal(again['likelihood'], rec['likelihood'])
    np.testing.assert_array_equal(again['cluster_id'], rec['cluster_id'])
    # re-clustering with other parameters reads the cache (no images)
    cache = osp.join(osp.dirname(out), 'embedding_cache')
    gmm = compute_likelihoods(
        KITTI_CFG, str(tmp_path / 'gmm.npz'), cache_dir=cache,
        img_prefix=None, figures=False,
        clusterer=dict(type='gmm', n_components=3, covariance_type='diag'),
        likelihood_def='fraction', **IMG)
    assert gmm['clusterer']['type'] == 'gmm'
    assert gmm['likelihood_def'] == 'fraction'
    sizes = gmm['cluster_size'] / len(gmm['sample_ids'])
    np.testing.assert_allclose(gmm['likelihood'], sizes)
    # refuses to overwrite
    with pytest.raises(FileExistsError, match='--overwrite'):
        compute_likelihoods(KITTI_CFG, out, **IMG)


@pytest.mark.slow
def test_detector_backbone_embedder(kitti_env, tmp_path):
    import torch
    from mmdet3d.registry import MODELS
    from mmengine.registry import init_default_scope

    from mmdet3d_equity.scoring.embedders import CheckpointMismatchError
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    from mmdet3d_equity.utils.config import load_config
    cfg = load_config(KITTI_CFG)
    init_default_scope('mmdet3d')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    sd = model.state_dict()
    ckpt = str(tmp_path / 'pp.pth')
    torch.save(dict(state_dict=sd, meta={}), ckpt)
    rec = compute_likelihoods(KITTI_CFG, str(tmp_path / 'det.npz'),
                              embedder='detector', detector_config=KITTI_CFG,
                              detector_checkpoint=ckpt)
    assert_rare_low(rec, kitti_env)
    assert rec['embedder']['type'] == 'detector'
    assert rec['embedder']['model_type'] == 'VoxelNet'
    assert osp.getsize(str(tmp_path / 'det_figures' / 'rare_clusters.png'))
    # a checkpoint that does not fit the config is an error, not a warning
    bad = dict(sd)
    first = [n for n in bad if n.startswith('bbox_head.')][-1]
    bad.pop(first)
    bad['foo.weight'] = torch.zeros(3)
    k = 'backbone.blocks.0.0.weight'
    bad[k] = torch.zeros(1, 1, 1, 1)
    torch.save(dict(state_dict=bad), str(tmp_path / 'bad.pth'))
    with pytest.raises(CheckpointMismatchError) as e:
        compute_likelihoods(KITTI_CFG, str(tmp_path / 'x.npz'),
                            embedder='detector', detector_config=KITTI_CFG,
                            detector_checkpoint=str(tmp_path / 'bad.pth'))
    msg = str(e.value)
    assert f'missing key(s): {first}' in msg
    assert 'unexpected key(s): foo.weight' in msg
    assert f'shape mismatch(es): {k}' in msg


def test_bad_inputs(kitti_env, tmp_path):
    import mmengine

    from mmdet3d_equity.scoring.embedders import EmbeddingError
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    with pytest.raises(ScoringError, match='config file not found'):
        compute_likelihoods(str(tmp_path / 'nope.py'), str(tmp_path / 'a.npz'))
    # empty training split
    infos = mmengine.load(osp.join(kitti_env, 'kitti_infos_train.pkl'))
    empty = str(tmp_path / 'empty.pkl')
    mmengine.dump(dict(metainfo=infos['metainfo'], data_list=[]), empty)
    with pytest.raises(ScoringError, match='training split is empty'):
        compute_likelihoods(
            KITTI_CFG, str(tmp_path / 'a.npz'), figures=False,
            cfg_options={'train_dataloader.dataset.dataset.ann_file': empty},
            **IMG)
    # unreadable image: a corrupt PNG in place of the first frame
    frames = tmp_path / 'frames'
    frames.mkdir()
    for info in infos['data_list']:
        name = info['images']['CAM2']['img_path']
        (frames / name).write_bytes(b'not a png')
    with pytest.raises(EmbeddingError, match='cannot decode image .*'
                       r"sample '\d+', camera CAM2"):
        compute_likelihoods(KITTI_CFG, str(tmp_path / 'a.npz'),
                            img_prefix=str(frames), use_cache=False, **IMG)
    with pytest.raises(EmbeddingError, match='image not found'):
        compute_likelihoods(KITTI_CFG, str(tmp_path / 'a.npz'),
                            img_prefix=str(tmp_path / 'nowhere'),
                            use_cache=False, **IMG)
    # clustering parameters are checked before anything is embedded
    with pytest.raises(ScoringError, match="unknown clusterer type 'optics'"):
        compute_likelihoods(str(tmp_path / 'nope.py'), str(tmp_path / 'a.npz'),
                            clusterer=dict(type='optics'), **IMG)
    with pytest.raises(ScoringError, match=r"unknown parameter\(s\) \['k'\]"):
        compute_likelihoods(str(tmp_path / 'nope.py'), str(tmp_path / 'a.npz'),
                            clusterer=dict(type='kmeans', k=3), **IMG)
    with pytest.raises(ScoringError, match="invalid parameter for clusterer "
                       "'dbscan'.*eps"):
        compute_likelihoods(str(tmp_path / 'nope.py'), str(tmp_path / 'a.npz'),
                            clusterer=dict(type='dbscan', eps=-1), **IMG)
    with pytest.raises(ScoringError, match="invalid parameter for reducer"):
        compute_likelihoods(str(tmp_path / 'nope.py'), str(tmp_path / 'a.npz'),
                            reducer=dict(type='pca', svd_solver='magic'),
                            **IMG)
    assert not osp.exists(str(tmp_path / 'a.npz'))


@pytest.mark.slow
def test_nan_embeddings_from_embedder(kitti_env, tmp_path, monkeypatch):
    from mmdet3d_equity.scoring import embedders
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    orig = embedders.ImageBackboneEmbedder.embed_batch

    def nan_embed(self, batch):
        v = orig(self, batch).clone()
        v[0, 0, 0] = float('nan')
        return v
    monkeypatch.setattr(embedders.ImageBackboneEmbedder, 'embed_batch',
                        nan_embed)
    with pytest.raises(ScoringError, match='contain NaN/inf'):
        compute_likelihoods(KITTI_CFG, str(tmp_path / 'a.npz'),
                            use_cache=False, **IMG)


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_cli_torchrun_two_processes_match_single(image_run, kitti_env,
                                                 tmp_path):
    """CLI end to end, 2 processes on gloo: same ids and likelihoods as the
    single-process API run."""
    _, single = image_run
    out = str(tmp_path / 'dist.npz')
    env = dict(os.environ, EQUITY_TINY_KITTI=kitti_env, OMP_NUM_THREADS='1',
               PYTHONPATH=REPO)
    cmd = [sys.executable, '-m', 'torch.distributed.run',
           '--nproc_per_node', '2', '--master_port', str(_free_port()),
           osp.join(REPO, 'tools/compute_likelihoods.py'), KITTI_CFG,
           '--out', out, '--backbone', repr(R18), '--input-size', '128',
           '64', '--batch-size', '16', '--no-cache', '--no-figures',
           '--launcher', 'pytorch']
    r = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    dist = load_likelihood_file(out)
    assert dist['extra']['world_size'] == 2
    assert dist['sample_ids'] == single['sample_ids']
    np.testing.assert_array_equal(dist['likelihood'], single['likelihood'])
    np.testing.assert_array_equal(dist['cluster_id'], single['cluster_id'])
    assert dist['fingerprint'] == single['fingerprint']
    assert osp.isfile(out[:-4] + '.csv')
    # the CLI refuses to overwrite, exit code 2 with the fix in the message
    r = subprocess.run([sys.executable,
                        osp.join(REPO, 'tools/compute_likelihoods.py'),
                        KITTI_CFG, '--out', out], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and '--overwrite' in r.stderr


@pytest.mark.slow
def test_nuscenes_six_cameras(tiny_nus_root, tmp_path, monkeypatch):
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    monkeypatch.setenv('EQUITY_TINY_NUS', tiny_nus_root)
    kw = dict(backbone=R18, input_size=(96, 64), batch_size=12)
    rec = compute_likelihoods(NUS_CFG, str(tmp_path / 'nus.npz'), **kw)
    assert rec['id_key'] == 'token'
    # one cluster definition: the CSV sizes, summary.json and the figures'
    # clusters (camera, that camera's cluster) agree
    from mmdet3d_equity.scoring.outputs import record_clusters
    table = record_clusters(rec)
    with open(tmp_path / 'nus.csv') as f:
        rows = [line.split(',') for line in f.read().splitlines()[1:]]
    for (sid, _, cid, size, _), s in zip(rows, rec['sample_ids']):
        assert sid == s and table[int(cid)]['size'] == int(size)
        assert len(table[int(cid)]['members']) == int(size)
    with open(tmp_path / 'nus_summary.json') as f:
        summ = json.load(f)
    assert summ['cluster_sizes'] == sorted(
        (c['size'] for c in table.values()), reverse=True)
    for name in ('rare_clusters', 'common_clusters'):
        assert osp.getsize(tmp_path / 'nus_figures' / f'{name}.png') > 1000
    agg = rec['aggregation']
    assert agg['mode'] == 'likelihood-min' and len(agg['cameras']) == 6
    assert rec['embedder']['num_cameras'] == 6
    per_cam = rec['extra']['per_camera']
    stack = np.stack([per_cam[c]['likelihood'] for c in agg['cameras']])
    np.testing.assert_allclose(rec['likelihood'], stack.min(axis=0))
    assert_rare_low(rec, tiny_nus_root)
    # other aggregations from the cache
    for mode in ('concat', 'likelihood-mean'):
        r = compute_likelihoods(NUS_CFG, str(tmp_path / f'{mode}.npz'),
                                camera_aggregation=mode, figures=False, **kw)
        assert r['aggregation']['mode'] == mode
        assert r['sample_ids'] == rec['sample_ids']
    np.testing.assert_allclose(
        r['likelihood'],
        np.stack([r['extra']['per_camera'][c]['likelihood']
                  for c in agg['cameras']]).mean(axis=0))
