"""The parts of scoring on their own: the settings object, the points
embedder against an independent computation, checkpoints through mmengine's
CheckpointLoader, and the one definition of a cluster with several cameras
(CSV, summary.json and the figures agree)."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from _tool_helpers import KITTI_CFG

from mmdet3d_equity.scoring.cameras import (
    aggregation_record,
    cluster_table,
    combine_camera_scores,
)
from mmdet3d_equity.scoring.outputs import summarize
from mmdet3d_equity.scoring.settings import ScoringSettings
from mmdet3d_equity.utils.errors import EmbeddingError, ScoringError
from mmdet3d_equity.visualization.scoring_plots import (
    pick_clusters,
    save_scoring_figures,
)


# -------------------------------------------------------------- settings
def test_settings_are_validated_when_made():
    s = ScoringSettings()
    assert s.embedder_cfg() == dict(type='image', backbone=None,
                                    checkpoint=None, input_size=384,
                                    resize='squash')
    det = ScoringSettings(embedder='detector', detector_config='d.py',
                          detector_checkpoint='c.pth')
    assert det.embedder_cfg() == dict(type='detector',
                                      detector_config='d.py',
                                      checkpoint='c.pth')
    assert ScoringSettings.create(s, eta=2.0).eta == 2.0
    with pytest.raises(ScoringError, match=r"unknown scoring option\(s\) "
                       r"\['etta'\]"):
        ScoringSettings.create(etta=1.0)
    with pytest.raises(ScoringError, match='--detector-config/'
                       '--detector-checkpoint are for --embedder detector, '
                       "not 'image'"):
        ScoringSettings(detector_config='d.py', detector_checkpoint='c.pth')
    with pytest.raises(ScoringError, match='--cameras / '
                       '--camera-aggregation apply to the image embedder'):
        ScoringSettings(embedder='points', cameras=['CAM2'])
    with pytest.raises(ScoringError, match='--eta/--gamma'):
        ScoringSettings(eta=-1.0)
    with pytest.raises(ScoringError, match="unknown camera aggregation 'max'"):
        ScoringSettings(camera_aggregation='max')
    with pytest.raises(ScoringError, match="--score-split 'train'"):
        ScoringSettings(score_splits=('train', ))
    with pytest.raises(ScoringError, match='--density-k must be an integer '
                       '>= 1'):
        ScoringSettings(density_k=0)
    # a dict embedder config takes its own options
    pts = ScoringSettings(embedder=dict(type='points', grid=(4, 4)))
    assert pts.embedder_cfg() == dict(type='points', grid=(4, 4))


# ------------------------------------------------------- points embedder
def _statistics_by_hand(points, rng, grid, hb, ib):
    x0, y0, z0, x1, y1, z1 = rng
    inside = [p for p in points if x0 <= p[0] < x1 and y0 <= p[1] < y1
              and z0 <= p[2] < z1]
    n = len(inside)
    bev = np.zeros(grid[0] * grid[1])
    height = np.zeros(hb)
    refl = np.zeros(ib)
    for p in inside:
        i = min(int((p[0] - x0) / (x1 - x0) * grid[0]), grid[0] - 1)
        j = min(int((p[1] - y0) / (y1 - y0) * grid[1]), grid[1] - 1)
        bev[i * grid[1] + j] += 1
        height[min(int((p[2] - z0) / (z1 - z0) * hb), hb - 1)] += 1
        r = min(max(p[3], 0.0), 1.0)
        refl[min(int(r * ib), ib - 1)] += 1
    shares = np.concatenate([bev, height, refl]) / max(n, 1)
    return np.concatenate([shares, [np.log10(1 + n)]])


def test_point_statistics_match_a_hand_computation():
    from mmdet3d_equity.scoring.embedders import point_statistics
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-5, 75, 500), rng.uniform(-45, 45, 500),
                           rng.uniform(-4, 2, 500), rng.uniform(-0.2, 1.2,
                                                                500)])
    box = (0.0, -39.68, -3.0, 69.12, 39.68, 1.0)
    got = point_statistics(pts, box, (8, 8), 8, 4)
    np.testing.assert_allclose(got, _statistics_by_hand(pts, box, (8, 8), 8,
                                                        4), rtol=1e-6)
    empty = point_statistics(np.zeros((0, 4)), box, (2, 2), 2, 2)
    np.testing.assert_array_equal(empty, np.zeros(2 * 2 + 2 + 2 + 1))
    with pytest.raises(ScoringError, match='intensity_bins=0'):
        point_statistics(pts[:, :3], box, (2, 2), 2, 2)


def test_points_embedder_from_the_registry(tiny_kitti_root, tmp_path,
                                           monkeypatch):
    from mmdet3d_equity.scoring import EMBEDDERS
    from mmdet3d_equity.scoring.embedders import (
        PointStatsEmbedder,
        point_statistics,
    )
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    assert EMBEDDERS.get('points') is PointStatsEmbedder
    with pytest.raises(EmbeddingError, match='runs no model'):
        EMBEDDERS.build(dict(type='points', amp=True))
    with pytest.raises(EmbeddingError, match='point_cloud_range'):
        EMBEDDERS.build(dict(type='points', point_cloud_range=(1, 0, 0, 0,
                                                              1, 1)))
    monkeypatch.setenv('EQUITY_TINY_KITTI', tiny_kitti_root)
    out = str(tmp_path / 'pts.npz')
    rec = compute_likelihoods(KITTI_CFG, out, embedder='points',
                              num_workers=0, figures=True)
    assert rec['embedder']['type'] == 'point_stats'
    assert rec['aggregation'] is None
    # the cached embeddings are the statistics of every training frame
    from mmdet3d_equity.scoring.dataset_source import Split
    from mmdet3d_equity.utils.config import load_config
    split = Split(load_config(KITTI_CFG), 'train')
    cache = osp.join(tmp_path, 'embedding_cache')
    (name, ) = os.listdir(cache)
    with np.load(osp.join(cache, name)) as z:
        emb = z['embeddings']
    params = rec['embedder']
    ref = np.stack([point_statistics(split.load_points(i),
                                     params['point_cloud_range'],
                                     params['grid'], params['height_bins'],
                                     params['intensity_bins'])
                    for i in range(len(split))])
    np.testing.assert_array_equal(emb[:, 0], ref)
    assert osp.getsize(osp.join(tmp_path, 'pts_figures',
                                'rare_clusters.png')) > 1000


# ------------------------------------------------------------ checkpoint
def test_checkpoints_through_mmengine_checkpoint_loader(tmp_path):
    from mmdet3d_equity.scoring.embedders import (
        CheckpointMismatchError,
        load_checked,
        read_state_dict,
    )
    model = torch.nn.Linear(3, 2)
    path = str(tmp_path / 'c.pth')
    torch.save(dict(state_dict={f'module.{k}': v for k, v in
                                model.state_dict().items()}), path)
    sd = read_state_dict(path)
    assert sorted(sd) == ['bias', 'weight']
    other = torch.nn.Linear(3, 2)
    load_checked(other, sd, path)
    assert torch.equal(other.weight, model.weight)
    with pytest.raises(CheckpointMismatchError, match='shape mismatch'):
        load_checked(torch.nn.Linear(4, 2), sd, path)
    with pytest.raises(EmbeddingError, match='checkpoint not found'):
        read_state_dict(str(tmp_path / 'none.pth'))
    (tmp_path / 'bad.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(EmbeddingError, match='cannot read checkpoint'):
        read_state_dict(str(tmp_path / 'bad.pth'))


# ------------------------------------------------ clusters, many cameras
def _two_camera_record():
    """Camera A: clusters {0: 6 samples, 1: 2}; camera B: {0: 7, 1: 1}."""
    a = dict(likelihood=np.array([1, 1, 1, 1, 1, 1, 1 / 3, 1 / 3]),
             cluster_id=np.array([0, 0, 0, 0, 0, 0, 1, 1]),
             cluster_size=np.array([6, 6, 6, 6, 6, 6, 2, 2]))
    b = dict(likelihood=np.array([1, 1, 1, 1, 1, 1, 1, 1 / 7]),
             cluster_id=np.array([0, 0, 0, 0, 0, 0, 0, 1]),
             cluster_size=np.array([7, 7, 7, 7, 7, 7, 7, 1]))
    comb = combine_camera_scores(dict(A=a, B=b), 'min')
    agg = aggregation_record(['A', 'B'], 2, 'likelihood-min')
    return dict(sample_ids=[str(i) for i in range(8)],
                likelihood=comb['likelihood'],
                cluster_id=comb['cluster_id'],
                cluster_size=comb['cluster_size'],
                likelihood_def='largest', clusterer=dict(num_noise=0),
                aggregation=agg, fingerprint='f', created='now',
                extra=dict(per_camera=dict(A=a, B=b),
                           rarest_camera=comb['rarest_camera']))


def test_one_cluster_definition_with_several_cameras(tmp_path):
    rec = _two_camera_record()
    table = cluster_table(rec['likelihood'], rec['cluster_id'],
                          rec['cluster_size'], rec['extra']['per_camera'],
                          rec['extra']['rarest_camera'])
    # sample 7 is rare in camera B (alone); 6 in camera A (with 7)
    assert rec['extra']['rarest_camera'][6:] == ['A', 'B']
    by_camera = {(c['camera'], tuple(c['members'])): c['size']
                 for c in table.values()}
    assert by_camera == {('A', (0, 1, 2, 3, 4, 5)): 6, ('A', (6, 7)): 2,
                         ('B', (7, )): 1}
    # every sample's CSV size is the size of its cluster in the table
    for i, cid in enumerate(rec['cluster_id']):
        assert table[int(cid)]['size'] == rec['cluster_size'][i]
        assert len(table[int(cid)]['members']) == rec['cluster_size'][i]
    summ = summarize(rec, 1.0, 5.0)
    assert summ['cluster_sizes'] == [6, 2, 1]
    assert summ['num_clusters'] == 3 and summ['num_singletons'] == 1
    assert 'lowest likelihood' in summ['cluster_definition']
    # the figures get the same clusters, and the thumbnail of the camera
    # whose clustering the row shows
    seen = []

    def thumb(i, camera):
        seen.append((i, camera))
        return np.zeros((8, 8, 3), np.uint8)
    figs = save_scoring_figures(rec, np.random.default_rng(0).normal(
        size=(8, 3)), str(tmp_path / 'f'), clusters=table, thumbnail=thumb,
        kind="each cluster's camera", overwrite=True)
    assert set(figs) >= {'rare_clusters', 'common_clusters'}
    assert (7, 'B') in seen and (0, 'A') in seen


def test_rare_and_common_figures_never_share_a_cluster():
    def table(sizes):
        return {c: dict(size=s, mean_likelihood=s / max(sizes), members=[],
                        camera=None) for c, s in enumerate(sizes)}
    for sizes in ([5], [5, 1], [5, 3, 1], [9, 7, 5, 3, 1], list(range(1, 12))):
        rare, common = pick_clusters(table(sizes), 4)
        assert not set(rare) & set(common), sizes
        assert len(rare) == min(4, (len(sizes) + 1) // 2)
        assert len(common) == min(4, len(sizes) - len(rare))
        sz = table(sizes)
        if rare and common:
            assert max(sz[c]['size'] for c in rare) <= \
                min(sz[c]['size'] for c in common)
    assert pick_clusters(table([5, 3, 1]), 4) == ([2, 1], [0])


def test_summary_json_round_trip_single_camera():
    rec = dict(sample_ids=['a', 'b', 'c'], likelihood=np.array([1, 1, .5]),
               cluster_id=np.array([0, 0, 1]),
               cluster_size=np.array([2, 2, 1]), likelihood_def='largest',
               clusterer=dict(num_noise=1), aggregation=None,
               fingerprint='f', created='now', extra={})
    summ = json.loads(json.dumps(summarize(rec, 1.0, 5.0)))
    assert summ['cluster_sizes'] == [2, 1]
    assert sum(summ['cluster_sizes']) == summ['num_samples'] == 3
