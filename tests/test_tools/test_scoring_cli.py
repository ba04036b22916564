"""tools/compute_likelihoods.py argument handling (no data needed)."""
import pytest

from mmdet3d_equity.cli.compute_likelihoods import build_kwargs, parse_args


def kw(*argv):
    return build_kwargs(parse_args(['cfg.py', '--out', 'x.npz', *argv]))


def test_defaults_and_presets():
    k = kw()
    assert k['embedder'] == 'image' and k['backbone'] is None
    assert k['input_size'] == 384 and k['resize'] == 'squash'
    assert k['clusterer'] == dict(type='kmeans', n_clusters='auto', n_init=1,
                                  max_iter=100)
    assert k['reducer']['type'] == 'pca' and k['reducer']['n_components'] == 64
    assert k['likelihood_def'] == 'largest' and k['use_cache']
    k = kw('--clusterer', 'gmm', '--clusterer-options', 'n_init=2',
           'tol=1e-4', '--reducer-options', 'whiten=True', 'n_components=16')
    assert k['clusterer'] == dict(type='gmm', n_components='auto',
                                  covariance_type='diag', n_init=2, tol=1e-4)
    assert k['reducer']['whiten'] is True
    assert k['reducer']['n_components'] == 16
    k = kw('--reducer', 'none', '--clusterer', 'hdbscan',
           '--clusterer-options', 'min_cluster_size=3', '--input-size', '96',
           '64', '--backbone', "dict(type='mmdet.ResNet', depth=18)")
    assert k['reducer'] is None
    assert k['clusterer'] == dict(type='hdbscan', min_cluster_size=3)
    assert k['input_size'] == (96, 64)
    assert k['backbone'] == dict(type='mmdet.ResNet', depth=18)
    k = kw('--detector-config', 'd.py', '--detector-checkpoint', 'c.pth')
    assert k['embedder'] == 'detector'


def test_bad_arguments():
    from mmdet3d_equity.utils.errors import ConfigError
    with pytest.raises(ConfigError, match='--backbone must be a dict'):
        kw('--backbone', 'resnet50')
    with pytest.raises(ConfigError, match='key=value'):
        kw('--clusterer-options', 'eps')
    with pytest.raises(ConfigError, match='S or W H'):
        kw('--input-size', '1', '2', '3')
    with pytest.raises(SystemExit):
        kw('--clusterer', 'spectral')


def test_loader_and_precision_flags():
    k = kw()
    assert k['num_workers'] == 2 and k['amp'] is False
    assert k['amp_dtype'] is None and k['channels_last'] is False
    k = kw('--workers', '0', '--amp', '--amp-dtype', 'bfloat16',
           '--channels-last', '--device', 'cuda:1', '--batch-size', '32')
    assert k['num_workers'] == 0 and k['amp'] is True
    assert k['amp_dtype'] == 'bfloat16' and k['channels_last'] is True
    assert k['device'] == 'cuda:1' and k['batch_size'] == 32
    with pytest.raises(SystemExit):
        kw('--amp-dtype', 'int8')


def test_backbone_is_read_as_a_literal_never_run(tmp_path):
    """--backbone is parsed as a literal (dict(...) calls included), never
    evaluated: code in it is refused, not run."""
    from mmdet3d_equity.utils.errors import ConfigError
    marker = tmp_path / 'ran'
    for code in (f"__import__('os').system('touch {marker}')",
                 f"dict(type=open('{marker}', 'w'))",
                 "dict(type='mmdet.ResNet', depth=len('abc'))"):
        with pytest.raises(ConfigError, match='--backbone must be a dict'):
            kw('--backbone', code)
    assert not marker.exists()
    assert kw('--backbone', "{'type': 'mmdet.ResNet', 'depth': 18, "
              "'out_indices': (3,)}")['backbone'] == dict(
        type='mmdet.ResNet', depth=18, out_indices=(3, ))
