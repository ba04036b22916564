"""The extension points of docs/extending.md, used from outside the
package: an embedder, a clusterer and a SliceMetric dataset kind are
registered here, in the test file, and used end to end at small size
(registered for the tests of this module only: other modules see the
shipped entries)."""
import numpy as np
import pytest
import torch
from _tool_helpers import KITTI_CFG, fresh_global_instances
from mmdet3d.registry import METRICS
from mmengine.evaluator import BaseMetric

from mmdet3d_equity.evaluation import SLICE_DATASETS, SliceDatasetKind
from mmdet3d_equity.scoring import CLUSTERERS, EMBEDDERS
from mmdet3d_equity.scoring.clusterers import BaseClusterer
from mmdet3d_equity.scoring.embedders import BaseEmbedder, LoadFailure
from mmdet3d_equity.utils.errors import ScoringError


# ----------------------------------------------------------- an embedder
class _Extent(torch.utils.data.Dataset):
    def __init__(self, split, rows):
        self.split, self.rows = split, list(rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        try:
            pts = self.split.load_points(self.rows[i])
        except ScoringError as e:
            return LoadFailure(e)
        return np.concatenate([pts[:, :3].mean(0), pts[:, :3].std(0),
                               [np.log10(1 + len(pts))]]).astype(np.float32)


class ExtentEmbedder(BaseEmbedder):
    """Mean and spread of the points' x, y, z and their log count."""
    kind = 'test_extent'

    def config(self):
        return dict(type=self.kind)

    def split_dataset(self, split, rows, cameras=None, img_prefix=None):
        return _Extent(split, rows)

    @staticmethod
    def collate(items):
        for it in items:
            if isinstance(it, LoadFailure):
                return it
        return torch.from_numpy(np.stack(items))[:, None, :]

    def embed_batch(self, batch):
        return batch


# ----------------------------------------------------------- a clusterer
class BirchClusterer(BaseClusterer):
    """scikit-learn's Birch; new samples go to the label of the nearest
    subcluster centre (Birch.predict)."""
    name = 'test_birch'
    preset = dict(n_clusters=3)

    @staticmethod
    def estimator_class():
        from sklearn.cluster import Birch
        return Birch

    def fitted_state(self, est):
        return dict(centres=est.subcluster_centers_,
                    labels=est.subcluster_labels_), {}

    def assign(self, arrays, settings, z, train_z, train_raw):
        d = ((z[:, None, :] - arrays['centres'][None]) ** 2).sum(-1)
        return arrays['labels'][d.argmin(1)].astype(np.int64)


@pytest.fixture(scope='module', autouse=True)
def registered():
    """Register the extensions of this file; remove them afterwards."""
    entries = [(EMBEDDERS, 'test_extent', ExtentEmbedder),
               (CLUSTERERS, 'test_birch', BirchClusterer),
               (METRICS, 'ToyAccuracyMetric', ToyAccuracyMetric),
               (SLICE_DATASETS, 'toy', ToyKind)]
    for reg, name, cls in entries:
        reg.register_module(name, module=cls)
    yield
    for reg, name, _ in entries:
        reg._module_dict.pop(name, None)


def _points_stats(split, i):
    pts = split.load_points(i)
    return np.concatenate([pts[:, :3].mean(0), pts[:, :3].std(0),
                           [np.log10(1 + len(pts))]])


def test_registered_embedder_and_clusterer_end_to_end(tiny_kitti_root,
                                                      tmp_path, monkeypatch):
    from sklearn.cluster import Birch

    from mmdet3d_equity.scoring.clustering import cluster_sizes
    from mmdet3d_equity.scoring.dataset_source import Split
    from mmdet3d_equity.scoring.pipeline import compute_likelihoods
    from mmdet3d_equity.scoring.split_scoring import score_other_split
    from mmdet3d_equity.utils.config import load_config
    monkeypatch.setenv('EQUITY_TINY_KITTI', tiny_kitti_root)
    out = str(tmp_path / 'lik.npz')
    rec = compute_likelihoods(
        KITTI_CFG, out, embedder='test_extent', reducer=None,
        clusterer=dict(type='test_birch', n_clusters=3), num_workers=0,
        figures=True, save_scorer=True, score_splits=('val', ))
    assert rec['embedder']['type'] == 'test_extent'
    assert rec['clusterer']['type'] == 'test_birch'
    # independent: the statistics by hand, Birch fitted by hand
    split = Split(load_config(KITTI_CFG), 'train')
    x = np.stack([_points_stats(split, i) for i in range(len(split))])
    labels = Birch(n_clusters=3).fit_predict(x.astype(np.float32))
    size = cluster_sizes(labels)
    np.testing.assert_array_equal(rec['cluster_size'], size)
    np.testing.assert_allclose(rec['likelihood'], size / size.max())
    # the val split through the saved scorer: the clusterer's assign rule
    val = score_other_split(KITTI_CFG, out[:-4] + '_scorer.npz',
                            str(tmp_path / 'val.npz'))
    vsplit = Split(load_config(KITTI_CFG), 'val')
    xv = np.stack([_points_stats(vsplit, i) for i in range(len(vsplit))])
    est = Birch(n_clusters=3).fit(x.astype(np.float32))
    pred = est.predict(xv.astype(np.float32))
    train_size = dict(zip(*np.unique(labels, return_counts=True)))
    np.testing.assert_allclose(
        val['likelihood'], [train_size[p] / size.max() for p in pred])


def test_unknown_extensions_are_named():
    from mmdet3d_equity.scoring.settings import ScoringSettings
    with pytest.raises(ScoringError, match="unknown embedder 'nope'.*"
                       "register yours"):
        ScoringSettings(embedder='nope')
    with pytest.raises(ScoringError, match="unknown clusterer type 'nope'"):
        ScoringSettings(clusterer=dict(type='nope'))
    with pytest.raises(ScoringError, match='--backbone is for --embedder '
                       "image, not 'test_extent'"):
        ScoringSettings(embedder='test_extent', backbone=dict(type='x'))


# -------------------------------------------------- a SliceMetric kind
class ToyAccuracyMetric(BaseMetric):
    """Share of correct predictions of samples named by ``ids``."""
    default_prefix = 'Toy metric'

    def __init__(self, ids, **kwargs):
        super().__init__(**kwargs)
        self.ids = list(ids)

    def process(self, data_batch, data_samples):
        self.results.extend(data_samples)

    def compute_metrics(self, results):
        return {'toy/accuracy': float(np.mean([r['correct']
                                               for r in results]))}


class ToyKind(SliceDatasetKind):
    label = 'Toy'
    name = 'toy'
    metric_description = 'ToyAccuracyMetric'
    default_metric = 'accuracy'
    metric_help = "'accuracy'"
    expected_keys = "keys such as 'Toy metric/toy/accuracy'"

    @classmethod
    def accepts(cls, metric):
        return isinstance(metric, ToyAccuracyMetric)

    def split_identities(self):
        return self.metric.ids

    def prepare(self, results):
        self.results = list(results)
        return [r['sample_id'] for r in results]

    def evaluate(self, idx, stock=None):
        out = {('count', 'num_samples'): float(len(idx)),
               ('count', 'accuracy'): float(len(idx))}
        if idx and stock is None:
            out[('stock', 'toy/accuracy')] = self.metric.compute_metrics(
                [self.results[i] for i in idx])['toy/accuracy']
        return out

    def table_title(self):
        return 'accuracy'

    def table_columns(self):
        return [('accuracy', 'toy/accuracy', 'accuracy')]

    @classmethod
    def matches_key(cls, key):
        return key.startswith('toy/')

    @classmethod
    def matches_metric(cls, metric):
        return metric == 'accuracy'

    @classmethod
    def view(cls, path, items, metric):
        vals = dict(items)
        if 'toy/accuracy' not in vals:
            return None
        return dict(classes={'all': float(vals['toy/accuracy'])},
                    summary={})

    @classmethod
    def count_cell(cls, metric):
        return lambda c: 'accuracy'


def test_registered_dataset_kind_end_to_end(tmp_path):
    from mmdet3d_equity.evaluation import SliceMetric, write_slice_file
    from mmdet3d_equity.evaluation.results import metric_views
    ids = [f'{i:06d}' for i in range(12)]
    correct = [i % 3 == 0 for i in range(12)]
    odd = ids[1::2]
    path = write_slice_file(str(tmp_path / 's.json'),
                            {i: ['odd'] for i in odd}, names=['odd', 'none'])
    m = SliceMetric(metric=dict(type='ToyAccuracyMetric', ids=ids),
                    slices=[dict(type='SliceFile', path=path)], min_gt=1)
    m.process({}, [dict(sample_id=i, correct=c)
                   for i, c in zip(ids, correct)])
    out = m.evaluate(len(ids))
    assert out['Toy metric/toy/accuracy'] == pytest.approx(np.mean(correct))
    assert out['Toy metric/@odd/toy/accuracy'] == pytest.approx(
        np.mean([c for i, c in zip(ids, correct) if i in odd]))
    assert 'Toy metric/@none/toy/accuracy' not in out  # missing, never 0
    assert out['Toy metric/@none:count/num_samples'] == 0
    views = metric_views('x.json', out)
    assert views['kind'] == 'toy'
    assert views['views'][('odd', 'stock')]['classes']['all'] == \
        pytest.approx(out['Toy metric/@odd/toy/accuracy'])
    assert views['views'][('odd', 'stock')]['num_samples'] == len(odd)


def test_compact_log_line_in_a_runner(tmp_path):
    """tools/test.py's path with the toy kind: the runner's log line holds
    the whole-split key only, its metrics JSON every key."""
    import glob
    import json

    from mmengine.model import BaseModel

    from mmdet3d_equity.evaluation import write_slice_file
    ids = [f'{i:06d}' for i in range(12)]

    class Model(BaseModel):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(1, 1)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return [dict(sample_id=s, correct=int(s) % 3 == 0)
                    for s in data_samples]

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return len(ids)

        def __getitem__(self, i):
            return dict(inputs=torch.zeros(1), data_samples=ids[i])
    path = write_slice_file(str(tmp_path / 's.json'),
                            {i: ['odd'] for i in ids[1::2]}, names=['odd'])
    with fresh_global_instances():  # the runner's logger goes with it
        _run_toy_test(Model(), Data(), ids, path, str(tmp_path / 'wd'))
    (log, ) = glob.glob(str(tmp_path / 'wd' / '*' / '*.log'))
    with open(log) as f:
        line = [x for x in f if 'Epoch(test)' in x][-1]
    assert 'Toy metric/toy/accuracy: 0.3333' in line
    assert '@odd' not in line and '(+5 SliceMetric slice keys' in line
    (js, ) = glob.glob(str(tmp_path / 'wd' / '*' / '*.json'))
    with open(js) as f:
        keys = set(json.load(f))
    assert {'Toy metric/toy/accuracy', 'Toy metric/@odd/toy/accuracy',
            'Toy metric/@odd:count/num_samples'} <= keys


def _run_toy_test(model, data, ids, path, work_dir):
    import logging

    from mmengine.runner import Runner
    runner = Runner(
        model=model, work_dir=work_dir, test_cfg=dict(),
        test_dataloader=dict(dataset=data, batch_size=4,
                             sampler=dict(type='DefaultSampler',
                                          shuffle=False),
                             collate_fn=dict(type='pseudo_collate')),
        test_evaluator=dict(type='SliceMetric',
                            metric=dict(type='ToyAccuracyMetric', ids=ids),
                            slices=[dict(type='SliceFile', path=path)],
                            min_gt=1),
        log_processor=dict(type='SliceLogProcessor'),
        default_scope='mmdet3d')
    try:
        runner.test()
    finally:
        for h in list(runner.logger.handlers):
            runner.logger.removeHandler(h)
            if isinstance(h, logging.FileHandler):
                h.close()
