"""Slice sources: slice files (own format, frame_modes.json, bare mapping),
nuScenes scene descriptions (night / rain / day; tool and tiny generator),
likelihood bins; clear errors for bad input."""
import json
import os.path as osp
import re
import sys

import numpy as np
import pytest

from mmdet3d_equity.evaluation.slice_sources import (
    LikelihoodSlices,
    SceneDescriptionSlices,
    SliceError,
    SliceFile,
    build_slice_source,
    likelihood_bins,
    read_slice_file,
    scene_description_slices,
    write_slice_file,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _write(tmp_path, obj, name='s.json'):
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return str(p)


def test_slice_file_formats(tmp_path):
    own = _write(tmp_path, dict(format='mmdet3d_equity.slices',
                                format_version=1, names=['night', 'empty'],
                                slices={'a': 'night', 'b': ['night', 'rain'],
                                        'c': ['rain']}), 'own.json')
    slices, names = read_slice_file(own)
    assert names == ['night', 'empty', 'rain']
    assert slices == {'night': {'a', 'b'}, 'rain': {'b', 'c'},
                      'empty': set()}
    modes = _write(tmp_path, dict(dataset='kitti', rare_mode='fog',
                                  modes={'3': 'fog', '7': 'day', '8': 'day'},
                                  split={'3': 'val'}), 'frame_modes.json')
    assert read_slice_file(modes) == ({'day': {'7', '8'}, 'fog': {'3'}},
                                      ['day', 'fog'])
    bare = _write(tmp_path, {'1': 'x', '2': ['x', 'y']}, 'bare.json')
    assert read_slice_file(bare)[0] == {'x': {'1', '2'}, 'y': {'2'}}
    src = build_slice_source(dict(type='SliceFile', path=own,
                                  names=['rain'], prefix='w_'))
    assert isinstance(src, SliceFile)
    assert src.load() == ({'w_rain': {'b', 'c'}}, ['w_rain'])


@pytest.mark.parametrize('obj,msg', [
    ([1, 2], 'holds a JSON object'),
    ({}, 'no slices found'),
    ({'a': 3}, "sample 'a' maps to 3"),
    ({'a': []}, 'non-empty list of slice names'),
    ({'a': 'all'}, "'all' is reserved for the whole split"),
    ({'a': 'bad/name'}, 'invalid slice name'),
    ({'slices': {'a': 'x'}, 'format_version': 2}, 'format_version 2'),
    ({'slices': {'a': 'x'}, 'format': 'other'}, "format 'other'"),
])
def test_bad_slice_files_are_clear_errors(tmp_path, obj, msg):
    with pytest.raises(SliceError, match=msg):
        read_slice_file(_write(tmp_path, obj))


def test_missing_unreadable_and_unknown(tmp_path):
    with pytest.raises(SliceError, match='slice file .*nope.json not found'):
        read_slice_file(str(tmp_path / 'nope.json'))
    bad = tmp_path / 'bad.json'
    bad.write_text('{not json')
    with pytest.raises(SliceError, match='is not readable JSON'):
        read_slice_file(str(bad))
    f = _write(tmp_path, {'a': 'x'})
    with pytest.raises(SliceError, match=r"no slice\(s\) \['y'\]"):
        SliceFile(f, names=['y']).load()
    with pytest.raises(SliceError, match="unknown slice source type 'Nope'"):
        build_slice_source(dict(type='Nope'))
    with pytest.raises(SliceError, match='bad arguments for slice source'):
        build_slice_source(dict(type='SliceFile', pth=f))


def test_write_slice_file_round_trip_and_refusal(tmp_path):
    out = str(tmp_path / 'w.json')
    write_slice_file(out, {'t1': ['night'], 't2': ['day']},
                     names=['night', 'day', 'rain'], id_key='token')
    assert read_slice_file(out) == ({'night': {'t1'}, 'day': {'t2'},
                                     'rain': set()},
                                    ['night', 'day', 'rain'])
    with pytest.raises(FileExistsError, match='already exists'):
        write_slice_file(out, {'t1': ['x']})
    with pytest.raises(SliceError, match='invalid slice name'):
        write_slice_file(str(tmp_path / 'x.json'), {'t1': ['a b']})


def _tables(tmp_path, descriptions):
    root = tmp_path / 'nus'
    (root / 'v1.0-test').mkdir(parents=True)
    scenes = [dict(token=f's{i}', name=f'scene-{i}', description=d)
              for i, d in enumerate(descriptions)]
    samples = [dict(token=f's{i}_{k}', scene_token=f's{i}')
               for i in range(len(descriptions)) for k in range(2)]
    (root / 'v1.0-test' / 'scene.json').write_text(json.dumps(scenes))
    (root / 'v1.0-test' / 'sample.json').write_text(json.dumps(samples))
    return str(root)


def test_scene_description_rules(tmp_path):
    root = _tables(tmp_path, [
        'Night, big street', 'RAIN, parking lot', 'night, raining hard',
        'Day, train station, drain', 'Nightlife district', 'sunny'])
    assignment, names = scene_description_slices(root, 'v1.0-test')
    assert names == ['night', 'rain', 'day']
    by_scene = {t.split('_')[0]: v for t, v in assignment.items()}
    assert by_scene == {'s0': ['night'], 's1': ['rain', 'day'],
                        's2': ['night', 'rain'], 's3': ['day'],
                        's4': ['night'], 's5': ['day']}
    assert len(assignment) == 12
    src = SceneDescriptionSlices(root, 'v1.0-test', words=['rain'],
                                 day=False, prefix='scene_')
    slices, names = src.load()
    assert names == ['scene_rain']
    assert slices['scene_rain'] == {'s1_0', 's1_1', 's2_0', 's2_1'}
    with pytest.raises(SliceError, match="complement of 'night'"):
        scene_description_slices(root, 'v1.0-test', words=['rain'])
    with pytest.raises(SliceError, match='scene.json not found'):
        scene_description_slices(root, 'v1.0-trainval')


def test_nuscenes_slices_tool_on_the_tiny_dataset(tiny_nus_root, tmp_path,
                                                  capsys):
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import nuscenes_slices
    finally:
        sys.path.pop(0)
    out = str(tmp_path / 'scene_slices.json')
    assert nuscenes_slices.main([tiny_nus_root, '--version', 'v1.0-mini',
                                 '--out', out]) == 0
    printed = capsys.readouterr().out
    slices, names = read_slice_file(out)
    assert names == ['night', 'rain', 'day']
    with open(osp.join(tiny_nus_root, 'v1.0-mini', 'scene.json')) as f:
        scenes = {s['token']: s for s in json.load(f)}
    with open(osp.join(tiny_nus_root, 'v1.0-mini', 'sample.json')) as f:
        samples = json.load(f)
    for s in samples:
        words = re.findall(r'[a-z]+',
                           scenes[s['scene_token']]['description'].lower())
        for w in ('night', 'rain'):
            assert (s['token'] in slices[w]) == any(
                x.startswith(w) for x in words)
        assert (s['token'] in slices['day']) != (s['token']
                                                 in slices['night'])
    import mmengine
    val = [d['token'] for d in mmengine.load(osp.join(
        tiny_nus_root, 'nuscenes_infos_val.pkl'))['data_list']]
    # the tiny generator puts one val scene at night in the rain, one by
    # day (described with 'train', which is not rain)
    for name in names:
        assert 0 < len(slices[name] & set(val)) < len(val)
    assert f'night: {len(slices["night"])} samples' in printed
    assert nuscenes_slices.main([tiny_nus_root, '--version', 'v1.0-mini',
                                 '--out', out]) == 2
    assert 'already exists' in capsys.readouterr().err


def test_likelihood_bins():
    p = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    bins, t = likelihood_bins(p)
    assert t == (0.25, 0.75) and bins.tolist() == [0, 0, 1, 1, 2, 2, 2]
    bins, t = likelihood_bins(p, thresholds=(0.2, 0.95))
    assert bins.tolist() == [0, 0, 1, 1, 1, 1, 2]
    bins, t = likelihood_bins(p, quantiles=(1 / 3, 2 / 3))
    assert t == tuple(np.quantile(p, (1 / 3, 2 / 3)))
    assert np.bincount(bins).tolist() == [2, 2, 3]  # t2 = 0.75 is common
    for kw, msg in [(dict(thresholds=(0.8, 0.2)), 'thresholds must be'),
                    (dict(quantiles=(0, 0.5)), 'quantiles must be'),
                    (dict(thresholds=(0.1, 0.2), quantiles=(0.2, 0.4)),
                     'not both')]:
        with pytest.raises(SliceError, match=msg):
            likelihood_bins(p, **kw)


def _likelihood_file(path, split, ids, p):
    from mmdet3d_equity.utils.likelihood_file import (
        build_record,
        save_likelihood_file,
    )
    rec = build_record(ids, p, np.arange(len(ids)), np.ones(len(ids), int),
                       id_key='sample_idx',
                       dataset=dict(type='KittiDataset', split=split),
                       embedder={}, reducer=None, clusterer=dict(type='x'),
                       likelihood_def='largest')
    save_likelihood_file(rec, path)
    return path


def test_likelihood_slices(tmp_path):
    ids = [str(i) for i in range(6)]
    p = [0.1, 0.2, 0.5, 0.6, 0.8, 1.0]
    f = _likelihood_file(str(tmp_path / 'val.npz'), 'val', ids, p)
    src = LikelihoodSlices(f)
    slices, names = src.load()
    assert names == ['p_rare', 'p_medium', 'p_common']
    assert slices == {'p_rare': {'0', '1'}, 'p_medium': {'2', '3'},
                      'p_common': {'4', '5'}}
    assert 'p < 0.25' in src.describe()
    train = _likelihood_file(str(tmp_path / 'train.npz'), 'train', ids, p)
    with pytest.raises(SliceError) as exc:
        LikelihoodSlices(train).load()
    assert str(exc.value) == (
        f'likelihood file {train} scores the training split; likelihood '
        'slices need the evaluated split scored against the training '
        'clustering (tools/score_split.py CONFIG --scorer '
        '<train>_scorer.npz --split val --out <stem>_val.npz, or '
        'compute_likelihoods.py --save-scorer --score-split val)')
    with pytest.raises(SliceError, match='needs 3 names'):
        LikelihoodSlices(f, names=['a', 'b'])
