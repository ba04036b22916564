"""Embedding through a DataLoader: workers, batch size, mixed precision,
channels_last, bad point clouds and corrupt caches.

Tolerances (also in docs/likelihoods.md):

* workers / batch size: the embeddings and the likelihood file's content
  are identical, bit for bit (a single image is forwarded paired with a
  copy of itself: the CPU backend computes a batch of one with other
  kernels).
* channels_last: embeddings within relative L2 1e-5.
* bfloat16 autocast: relative L2 < 2e-2, cosine >= 0.999 per sample;
  float16 autocast: relative L2 < 5e-3, cosine >= 0.9999.
"""
import logging
import os
import os.path as osp

import numpy as np
import pytest
import torch

from mmdet3d_equity.scoring.clustering import ScoringError
from mmdet3d_equity.scoring.embedders import (
    EmbeddingError,
    ImageSampleDataset,
    InferenceOptions,
    collate_images,
    make_loader,
    normalize_images,
    preprocess,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KITTI_CFG = osp.join(REPO, 'configs/tiny/pointpillars_tiny-kitti-3class.py')
R18 = dict(type='mmdet.ResNet', depth=18, out_indices=(3, ))


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
def split(kitti_env):
    from mmdet3d_equity.scoring.dataset_source import Split
    from mmdet3d_equity.utils.config import load_config
    return Split(load_config(KITTI_CFG), 'train')


def _content(rec):
    """Everything in a likelihood record except its creation time."""
    return {k: v for k, v in rec.items() if k != 'created'}


def assert_same_content(a, b):
    a, b = _content(a), _content(b)
    assert sorted(a) == sorted(b)
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        elif k == 'extra':
            assert sorted(a[k]) == sorted(b[k])
            for kk in a[k]:
                np.testing.assert_equal(a[k][kk], b[k][kk], err_msg=kk)
        else:
            assert a[k] == b[k], k


def _cached_embeddings(cache_dir):
    (name, ) = os.listdir(cache_dir)
    with np.load(osp.join(cache_dir, name), allow_pickle=False) as z:
        return z['embeddings']


def rel_l2(x, ref):
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def min_cosine(x, ref):
    x, ref = x.reshape(len(x), -1), ref.reshape(len(ref), -1)
    cos = (x * ref).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(
        ref, axis=1)
    return float(cos.min())


# ------------------------------------------------------------ inputs
@pytest.mark.parametrize('resize', ['squash', 'letterbox'])
def test_loader_input_equals_numpy_preprocess(tmp_path, resize):
    """Worker-side read/decode/resize + device-side normalisation give
    bit for bit the numpy reference :func:`preprocess`."""
    import mmcv
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(70, 120), (90, 40), (64, 64)]):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        p = str(tmp_path / f'{i}.png')
        mmcv.imwrite(img, p)
        paths.append([p])
    size = (48, 32)
    ds = ImageSampleDataset(paths, ['a', 'b', 'c'], ['CAM2'], size, resize)
    batch = collate_images([ds[i] for i in range(3)])
    assert batch['img'].dtype == torch.uint8
    x = normalize_images(batch['img'][:, 0], batch['box'][:, 0], resize)
    ref = np.stack([preprocess(mmcv.imread(p[0]), size, resize)
                    for p in paths])
    assert torch.equal(x, torch.from_numpy(ref))
    cl = normalize_images(batch['img'][:, 0], batch['box'][:, 0], resize,
                          channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl, x)


def test_options_validation_and_cuda_wiring(monkeypatch):
    with pytest.raises(EmbeddingError, match='--amp-dtype .* without --amp'):
        InferenceOptions('cpu', amp_dtype='bfloat16')
    with pytest.raises(EmbeddingError, match="unknown --amp-dtype 'int8'"):
        InferenceOptions('cpu', amp=True, amp_dtype='int8')
    with pytest.raises(EmbeddingError, match=r'--workers .* >= 0'):
        InferenceOptions('cpu', num_workers=-1)
    with pytest.raises(EmbeddingError, match='invalid --device'):
        InferenceOptions('gpu0')
    cpu = InferenceOptions('cpu', amp=True)
    assert cpu.amp_dtype == 'bfloat16' and not cpu.pin_memory
    assert cpu.config() == dict(precision='amp-bfloat16',
                                channels_last=False)
    loader = make_loader(list(range(5)), 2, cpu, collate_images)
    assert not loader.pin_memory
    if not torch.cuda.is_available():
        with pytest.raises(EmbeddingError, match='CUDA is not available'):
            InferenceOptions('cuda')
        # CUDA-only wiring (pinned batches, non-blocking copies, float16
        # autocast by default), checked without a GPU
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    gpu = InferenceOptions('cuda', num_workers=3, amp=True,
                           channels_last=True)
    assert gpu.pin_memory and gpu.amp_dtype == 'float16'
    assert gpu.config() == dict(precision='amp-float16', channels_last=True)
    loader = make_loader(list(range(5)), 2, gpu, collate_images)
    assert loader.pin_memory and loader.num_workers == 3


_FORK_AFTER_OPENCV = r"""
import sys
import cv2
import numpy as np
from mmdet3d_equity.scoring import embedders as E
big = np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), np.uint8)
paths = []
for i in range(4):
    paths.append([f'{sys.argv[1]}/{i}.png'])
    cv2.imwrite(paths[-1][0], big[:200, :300])
ds = E.ImageSampleDataset(paths, list('abcd'), ['C'], (32, 32), 'squash')
opts = E.InferenceOptions('cpu', num_workers=2)
for attempt in range(3):
    cv2.setNumThreads(2)  # the main process uses OpenCV's thread pool ...
    cv2.resize(big, (1000, 750))
    cv2.GaussianBlur(big, (0, 0), 3)
    # ... then forks loader workers
    n = sum(len(b['img']) for b in E.iter_batches(ds, 2, opts,
                                                  E.collate_images))
    assert n == 4 and cv2.getNumThreads() == 2
print('ok')
"""


@pytest.mark.slow
def test_workers_forked_after_opencv_threads_do_not_hang(tmp_path):
    """A worker forked while OpenCV's thread pool exists in the main
    process (e.g. thumbnails of an earlier run) used to wait forever."""
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-c', _FORK_AFTER_OPENCV,
                        str(tmp_path)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith('ok'), \
        r.stderr[-2000:]


# ------------------------------------------------ workers / batch size
@pytest.mark.slow
def test_workers_and_batch_size_do_not_change_the_likelihood_file(
        kitti_env, tmp_path):
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    recs, embs = [], []
    for workers, bs in ((0, 1), (2, 1), (2, 3)):
        d = tmp_path / f'w{workers}_b{bs}'
        recs.append(compute_likelihoods(
            KITTI_CFG, str(d / 'lik.npz'), backbone=R18,
            input_size=(128, 64), batch_size=bs, num_workers=workers,
            cache_dir=str(d / 'cache'), figures=False))
        embs.append(_cached_embeddings(str(d / 'cache')))
    for rec in recs[1:]:
        assert_same_content(recs[0], rec)
    assert recs[0]['content_fingerprint'] == recs[2]['content_fingerprint']
    assert recs[0]['embedder']['precision'] == 'float32'
    assert 'num_workers' not in recs[0]['embedder']
    np.testing.assert_array_equal(embs[0], embs[1])
    np.testing.assert_array_equal(embs[0], embs[2])


@pytest.mark.slow
def test_detector_embedder_workers_give_identical_embeddings(split,
                                                             tmp_path):
    from mmdet3d_equity.scoring.embedding import embed_split
    from mmdet3d_equity.scoring.settings import ScoringSettings
    ckpt = _tiny_detector_checkpoint(tmp_path)
    embs = []
    for workers in (0, 2):
        emb = ScoringSettings(embedder='detector', detector_config=KITTI_CFG,
                              detector_checkpoint=ckpt, batch_size=4,
                              num_workers=workers).build_embedder()
        embs.append(embed_split(split, emb, None, use_cache=False))
    assert embs[0].shape == (len(split), 1, embs[0].shape[2])
    np.testing.assert_array_equal(embs[0], embs[1])


# ------------------------------------------- mixed precision / layout
@pytest.mark.slow
def test_amp_and_channels_last_within_tolerance(kitti_env, tmp_path):
    """bf16 autocast runs on CPU (slow without bf16 hardware: ~30 s);
    float16 autocast is the CUDA default and also runs on CPU here."""
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    kw = dict(backbone=R18, input_size=(64, 32), batch_size=16,
              num_workers=0, figures=False)
    recs, embs = {}, {}
    for name, opt in (('fp32', {}), ('cl', dict(channels_last=True)),
                      ('bf16', dict(amp=True, amp_dtype='bfloat16')),
                      ('fp16', dict(amp=True, amp_dtype='float16'))):
        d = tmp_path / name
        recs[name] = compute_likelihoods(
            KITTI_CFG, str(d / 'lik.npz'), cache_dir=str(d / 'cache'),
            **kw, **opt)
        embs[name] = _cached_embeddings(str(d / 'cache'))
    ref = embs['fp32']
    assert rel_l2(embs['cl'], ref) < 1e-5
    assert rel_l2(embs['bf16'], ref) < 2e-2
    assert min_cosine(embs['bf16'], ref) >= 0.999
    assert rel_l2(embs['fp16'], ref) < 5e-3
    assert min_cosine(embs['fp16'], ref) >= 0.9999
    assert recs['bf16']['embedder']['precision'] == 'amp-bfloat16'
    assert recs['fp16']['embedder']['precision'] == 'amp-float16'
    assert recs['cl']['embedder']['channels_last'] is True
    # the resulting likelihoods: the same clustering, the same file rows
    for name in ('cl', 'bf16', 'fp16'):
        assert recs[name]['sample_ids'] == recs['fp32']['sample_ids']
        np.testing.assert_array_equal(recs[name]['likelihood'],
                                      recs['fp32']['likelihood'])
        np.testing.assert_array_equal(recs[name]['cluster_size'],
                                      recs['fp32']['cluster_size'])


# -------------------------------------------------------- point clouds
def _tiny_detector_checkpoint(tmp_path):
    from mmdet3d.registry import MODELS
    from mmengine.registry import init_default_scope

    from mmdet3d_equity.utils.config import load_config
    init_default_scope('mmdet3d')
    torch.manual_seed(0)
    model = MODELS.build(load_config(KITTI_CFG).model)
    ckpt = str(tmp_path / 'pp.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    return ckpt


def _velodyne_copy(kitti_root, tmp_path, first_bytes):
    """A velodyne folder of links to the tiny data's clouds, the first
    training frame's replaced by ``first_bytes``; returns (folder, path of
    the bad file, its sample id)."""
    import mmengine
    infos = mmengine.load(osp.join(kitti_root, 'kitti_infos_train.pkl'))
    src = osp.join(kitti_root, 'training', 'velodyne')
    dst = tmp_path / 'velodyne'
    dst.mkdir()
    for name in os.listdir(src):
        os.symlink(osp.join(src, name), dst / name)
    first = infos['data_list'][0]['lidar_points']['lidar_path']
    bad = dst / osp.basename(first)
    bad.unlink()
    bad.write_bytes(first_bytes)
    return str(dst), str(bad), str(infos['data_list'][0]['sample_idx'])


@pytest.mark.parametrize('what,data,message', [
    ('empty', b'', r'is empty \(0 bytes\)'),
    ('truncated', b'\0' * (16 * 10 + 6),
     r'is truncated .* 166 bytes is not a multiple of the 16-byte point '
     r'record \(load_dim=4\)')])
def test_bad_point_cloud_is_named(kitti_env, tmp_path, what, data, message):
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    folder, bad, sid = _velodyne_copy(kitti_env, tmp_path, data)
    ckpt = _tiny_detector_checkpoint(tmp_path)
    opts = {'train_dataloader.dataset.dataset.data_prefix.pts': folder}
    for workers in (0, 2):
        with pytest.raises(ScoringError, match=message) as e:
            compute_likelihoods(
                KITTI_CFG, str(tmp_path / 'lik.npz'), embedder='detector',
                detector_config=KITTI_CFG, detector_checkpoint=ckpt,
                num_workers=workers, use_cache=False, figures=False,
                cfg_options=opts)
        msg = str(e.value)
        assert bad in msg and f'(sample {sid!r})' in msg, msg
        assert 'Traceback' not in msg
    # the BEV thumbnails read the clouds too: same check
    from mmdet3d_equity.scoring.dataset_source import Split
    from mmdet3d_equity.utils.config import load_config
    sp = Split(load_config(KITTI_CFG, opts), 'train')
    with pytest.raises(ScoringError, match=message):
        sp.load_points(0)


# ------------------------------------------------------- corrupt cache
class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'wrong_array'])
def test_corrupt_embedding_cache_is_recomputed_with_a_warning(
        split, tmp_path, damage):
    from mmdet3d_equity.scoring.embedding import embed_split
    from mmdet3d_equity.scoring.outputs import get_logger
    from mmdet3d_equity.scoring.settings import ScoringSettings
    from mmdet3d_equity.utils.fileio import atomic_savez
    emb = ScoringSettings(backbone=R18, input_size=(64, 32), batch_size=16,
                          num_workers=0).build_embedder()
    cache = str(tmp_path / 'cache')
    ref = embed_split(split, emb, ['CAM2'], cache_dir=cache)
    (name, ) = os.listdir(cache)
    path = osp.join(cache, name)
    if damage == 'truncated':
        with open(path, 'rb') as f:
            blob = f.read()
        with open(path, 'wb') as f:
            f.write(blob[:len(blob) // 2])
    elif damage == 'garbage':
        with open(path, 'wb') as f:
            f.write(b'PK\x03\x04 definitely not a zip archive')
    else:  # a readable archive with the wrong content
        atomic_savez(path, overwrite=True, sample_ids=np.asarray(split.ids),
                     embeddings=np.zeros((3, 2), np.float64))
    logger = get_logger()
    rec = _Records()
    logger.addHandler(rec)
    try:
        again = embed_split(split, emb, ['CAM2'], cache_dir=cache,
                            logger=logger)
    finally:
        logger.removeHandler(rec)
    np.testing.assert_array_equal(again, ref)
    warned = [m for m in rec.messages if path in m]
    assert warned and 're-embedding and replacing it' in warned[0], \
        rec.messages
    # the cache was replaced by a good one
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z['embeddings'], ref)


def test_scorer_fitted_with_channels_last_scores_another_split(kitti_env,
                                                               tmp_path):
    """The saved scorer records the numeric options (precision,
    channels_last), so scoring the val split rebuilds the same embedder
    (before, it was refused as 'differs from the one the scorer was
    fitted with')."""
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    from mmdet3d_equity.scoring.split_scoring import score_other_split
    out = str(tmp_path / 'lik.npz')
    kw = dict(backbone=R18, input_size=(64, 32), batch_size=16)
    compute_likelihoods(KITTI_CFG, out, save_scorer=True,
                        channels_last=True, figures=False, **kw)
    rec = score_other_split(KITTI_CFG, str(tmp_path / 'lik_scorer.npz'),
                            str(tmp_path / 'val.npz'), split='val',
                            use_cache=False)
    assert rec['dataset']['split'] == 'val'
    assert rec['embedder']['channels_last'] is True
