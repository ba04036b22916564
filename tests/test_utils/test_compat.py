"""Compatibility fixes for the pinned stack."""
import numpy as np
import torch


def test_np_long_alias_like_numpy2():
    import mmdet3d_equity  # noqa: F401
    assert np.dtype(np.long) == np.dtype(np.int_)
    arr = np.array([1, 2], dtype=np.long)
    assert arr.dtype.itemsize == 8


def test_mmengine_checkpoint_with_message_hub_loads(tmp_path):
    """A checkpoint holding MMEngine's MessageHub state (HistoryBuffer) is
    refused by torch.load's default but loads through MMEngine's loader."""
    import pytest
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import _load_checkpoint

    import mmdet3d_equity  # noqa: F401
    hub = MessageHub.get_instance('compat_test')
    hub.update_scalar('train/loss', 1.5)
    ckpt = dict(state_dict={'w': torch.ones(2)},
                message_hub=hub.state_dict(), meta=dict(epoch=1))
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(ckpt, path)
    if tuple(int(x) for x in torch.__version__.split('.')[:2]) >= (2, 6):
        with pytest.raises(Exception, match='weights_only'):
            torch.load(path)  # torch's own default is untouched
    loaded = _load_checkpoint(path, map_location='cpu')
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))
    assert loaded['meta']['epoch'] == 1
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        _load_checkpoint(str(tmp_path / 'nope.pth'))
