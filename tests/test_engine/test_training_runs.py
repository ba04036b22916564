"""Real Runner trainings on the tiny KITTI configs (in-process, CPU):

* --resume after an interrupted training ends with the same weights as an
  uninterrupted run, for an equity run and for an SSB run;
* the EquityDataset wrapper without anything that applies it fails at the
  start of training, naming the missing piece;
* testing an SSB checkpoint needs no training data, and the checkpoint is a
  plain mmdet3d one.

The train pipeline is made deterministic (no ObjectSample, flips, rotations
or point shuffling: those draw from numpy's global generator, whose state a
checkpoint does not hold), so both runs see the same batches.
"""
import copy
import os
import os.path as osp
import uuid

import pytest
import torch
from mmdet3d.registry import HOOKS
from mmengine.hooks import Hook

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
EQ_CFG = osp.join(REPO, 'configs', 'tiny',
                  'pointpillars_tiny-kitti-3class_equity.py')
SSB_CFG = osp.join(REPO, 'configs', 'tiny',
                   'pointpillars_tiny-kitti-3class_ssb.py')
FRAMES = 4  # batch 2: 2 iterations an epoch


@HOOKS.register_module(force=True)
class InterruptAfterEpoch(Hook):
    """Stops training after the checkpoint of epoch ``epoch`` is written
    (CheckpointHook is VERY_LOW; this runs after it)."""
    priority = 'LOWEST'

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        # (runner.epoch counts finished epochs only after this call)
        if runner.epoch + 1 == self.epoch:
            raise KeyboardInterrupt(f'interrupted after epoch {self.epoch}')


def tiny_cfg(config, work_dir, root, epochs=3, extra_hooks=(),
             resume=False):
    from mmdet3d_equity.utils.config import load_config
    os.environ['EQUITY_TINY_KITTI'] = root
    cfg = load_config(config)
    cfg.work_dir = work_dir
    cfg.experiment_name = f'run_{uuid.uuid4().hex[:8]}'
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_begin = 100
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.checkpoint.max_keep_ckpts = 5
    cfg.default_hooks.logger.interval = 1
    cfg.train_dataloader.batch_size = 2
    leaf = cfg.train_dataloader.dataset
    while 'dataset' in leaf:
        leaf = leaf.dataset
    leaf.indices = FRAMES
    keep = ('LoadPointsFromFile', 'LoadAnnotations3D', 'PointsRangeFilter',
            'ObjectRangeFilter', 'Pack3DDetInputs')
    leaf.pipeline = [t for t in leaf.pipeline if t['type'] in keep]
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + list(extra_hooks)
    if resume:
        cfg.resume, cfg.load_from = True, None
    return cfg


def train(cfg):
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    return {k: v.detach().clone() for k, v in runner.model.state_dict()
            .items()}


def resume_equals_uninterrupted(config, root, tmp_path, prepare=None,
                                final=None):
    """``final``: the state dict of the uninterrupted run when the caller
    has it already (trained with ``tiny_cfg(config, ..., root)``)."""
    torch.set_num_threads(1)
    if final is None:
        full = tiny_cfg(config, str(tmp_path / 'full'), root)
        if prepare is not None:
            prepare(full)
        final = train(full)
    work = str(tmp_path / 'interrupted')
    cut = tiny_cfg(config, work, root,
                   extra_hooks=[dict(type='InterruptAfterEpoch', epoch=2)])
    if prepare is not None:
        prepare(cut)
    with pytest.raises(KeyboardInterrupt):
        train(cut)
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))
    assert not osp.isfile(osp.join(work, 'epoch_3.pth'))
    again = tiny_cfg(config, work, root, resume=True)
    if prepare is not None:
        prepare(again)
    resumed = train(again)
    assert resumed.keys() == final.keys()
    for k in final:
        torch.testing.assert_close(resumed[k], final[k], rtol=0, atol=0,
                                   msg=k)
    return work


@pytest.mark.slow
def test_equity_resume_equals_uninterrupted(tiny_kitti_root, tmp_path):
    from test_equity_train import write_tiny_likelihoods
    lik = str(tmp_path / 'equity_likelihoods.npz')

    def prepare(cfg):
        if not osp.isfile(lik):
            write_tiny_likelihoods(cfg, lik)
        cfg.train_dataloader.dataset.likelihood_file = lik

    resume_equals_uninterrupted(EQ_CFG, tiny_kitti_root, tmp_path, prepare)


@pytest.fixture(scope='module')
def ssb_run(tiny_kitti_root, tmp_path_factory):
    """The uninterrupted 3-epoch SSB run (shared): its config, work dir
    (epoch_1..3.pth) and final state dict."""
    torch.set_num_threads(1)
    work = str(tmp_path_factory.mktemp('ssb_run') / 'full')
    cfg = tiny_cfg(SSB_CFG, work, tiny_kitti_root, epochs=3)
    return dict(cfg=cfg, work_dir=work, final=train(copy.deepcopy(cfg)))


@pytest.mark.slow
def test_ssb_resume_equals_uninterrupted(ssb_run, tiny_kitti_root,
                                         tmp_path):
    # warm-up 4 iterations, updates at 4 and 6: the interruption after
    # epoch 2 (iteration 4) falls right after the first update
    work = resume_equals_uninterrupted(SSB_CFG, tiny_kitti_root, tmp_path,
                                       final=ssb_run['final'])
    state = torch.load(osp.join(work, 'epoch_2.pth'), map_location='cpu',
                       weights_only=False)
    w = state['semantic_scale_balance']['class_weights']
    assert not torch.equal(w, torch.ones_like(w))


@pytest.mark.slow
def test_wrapper_without_anything_that_applies_it_fails_at_start(
        tiny_kitti_root, tmp_path):
    from test_equity_train import write_tiny_likelihoods
    cfg = tiny_cfg(EQ_CFG, str(tmp_path / 'w'), tiny_kitti_root)
    lik = str(tmp_path / 'equity_likelihoods.npz')
    write_tiny_likelihoods(cfg, lik)
    cfg.train_dataloader.dataset.likelihood_file = lik
    cfg.custom_hooks = []  # the EquityHook forgotten
    with pytest.raises(RuntimeError) as e:
        train(cfg)
    msg = str(e.value)
    assert 'EquityDataset: nothing applies the likelihoods' in msg
    assert 'stock baseline' in msg
    assert not any(f.endswith('.pth') for f in os.listdir(tmp_path / 'w'))


@pytest.mark.slow
def test_resume_with_another_eta_is_refused_unless_asked_for(
        tiny_kitti_root, tmp_path):
    """A resume that changes eta would be a mixed run recorded as the new
    eta only: refused; with allow_changed_settings=True it trains and the
    checkpoints record the change. The interrupted run's torch hooks are
    gone from its model."""
    from mmengine.runner import Runner
    from test_equity_train import write_tiny_likelihoods

    from mmdet3d_equity.utils.errors import ConfigError
    torch.set_num_threads(1)
    work = str(tmp_path / 'w')
    cfg = tiny_cfg(EQ_CFG, work, tiny_kitti_root, epochs=2,
                   extra_hooks=[dict(type='InterruptAfterEpoch', epoch=1)])
    lik = str(tmp_path / 'equity_likelihoods.npz')
    write_tiny_likelihoods(cfg, lik)
    cfg.train_dataloader.dataset.likelihood_file = lik
    runner = Runner.from_cfg(cfg)
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    model = runner.model
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert not model.bbox_head._forward_hooks

    def resumed(**hook_kw):
        again = tiny_cfg(EQ_CFG, work, tiny_kitti_root, epochs=2,
                         resume=True)
        again.train_dataloader.dataset.likelihood_file = lik
        again.custom_hooks[0].loss.eta = 0.5
        again.custom_hooks[0].update(hook_kw)
        return again

    with pytest.raises(ConfigError, match=r'EquityHook: the resumed '
                       r'checkpoint was trained with other settings \(eta: '
                       r'1.0 in the checkpoint, 0.5 now\)'):
        train(resumed())
    assert not osp.isfile(osp.join(work, 'epoch_2.pth'))
    train(resumed(allow_changed_settings=True))
    state = torch.load(osp.join(work, 'epoch_2.pth'), map_location='cpu',
                       weights_only=False)['equity_weighting']
    assert state['settings']['eta'] == 0.5
    assert state['history'] == [dict(iter=2, changes=dict(eta=(1.0, 0.5)))]


@pytest.mark.slow
def test_ssb_checkpoint_tests_without_training_data(ssb_run,
                                                    tiny_kitti_root,
                                                    tmp_path):
    """tools/test.py's Runner.test of an SSB config never
    touches the train dataloader; the checkpoint (plain state dict + the
    hook's SSB state) loads strictly into the plain model."""
    from mmdet3d.registry import MODELS
    from mmengine.runner import Runner
    ckpt_cfg = ssb_run['cfg']  # trained for 3 epochs
    ckpt = osp.join(ssb_run['work_dir'], 'epoch_3.pth')
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    plain = MODELS.build(copy.deepcopy(ckpt_cfg.model))
    plain.load_state_dict(state['state_dict'], strict=True)
    assert 'semantic_scale_balance' in state
    cfg = tiny_cfg(SSB_CFG, str(tmp_path / 'test'), tiny_kitti_root)
    # no training data: the train split's info file does not exist
    leaf = cfg.train_dataloader.dataset
    while 'dataset' in leaf:
        leaf = leaf.dataset
    leaf.ann_file = str(tmp_path / 'no_such_train_infos.pkl')
    cfg.load_from = ckpt
    cfg.test_dataloader.dataset.indices = 2
    cfg.test_evaluator = dict(type='DumpResults',
                              out_file_path=str(tmp_path / 'preds.pkl'))
    runner = Runner.from_cfg(cfg)
    runner.test()
    assert osp.isfile(tmp_path / 'preds.pkl')
    # the SSB hook did not wrap anything for testing
    assert type(runner.model.bbox_head.loss_cls).__name__ == 'FocalLoss'


@pytest.mark.slow
@pytest.mark.parametrize('with_hook', [True, False])
def test_iteration_based_loop_with_workers(tiny_kitti_root, tmp_path,
                                           with_hook):
    """An IterBasedTrainLoop starts its dataloader workers when the loop is
    built, before any hook's before_train: the EquityHook claims the wrapper
    in before_train and restarts those workers once, so they serve claimed
    copies; without it the workers refuse."""
    from test_equity_train import write_tiny_likelihoods
    cfg = tiny_cfg(EQ_CFG, str(tmp_path / 'w'), tiny_kitti_root)
    lik = str(tmp_path / 'equity_likelihoods.npz')
    write_tiny_likelihoods(cfg, lik)
    cfg.train_dataloader.dataset.likelihood_file = lik
    cfg.train_dataloader.num_workers = 1
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                         val_interval=100)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2,
                                        by_epoch=False)
    cfg.log_processor = dict(window_size=1, by_epoch=False)
    if with_hook:
        train(cfg)
        assert osp.isfile(tmp_path / 'w' / 'iter_2.pth')
    else:
        cfg.custom_hooks = []
        with pytest.raises(RuntimeError, match='nothing applies the '
                           'likelihoods this wrapper attaches'):
            train(cfg)


@pytest.mark.slow
def test_resample_config_trains(tiny_kitti_root, tmp_path):
    """configs/tiny/*_equity-resample.py: the sampler (which owns eta and
    gamma here) claims the wrapper; no EquityHook is involved."""
    from mmengine.runner import Runner
    from test_equity_train import write_tiny_likelihoods
    cfg = tiny_cfg(osp.join(REPO, 'configs', 'tiny',
                            'pointpillars_tiny-kitti-3class_equity-'
                            'resample.py'), str(tmp_path / 'w'),
                   tiny_kitti_root, epochs=1)
    lik = str(tmp_path / 'equity_likelihoods.npz')
    write_tiny_likelihoods(cfg, lik)
    cfg.train_dataloader.dataset.likelihood_file = lik
    cfg.train_dataloader.sampler.loss.eta = 0.5  # its one key
    runner = Runner.from_cfg(cfg)
    runner.train()
    sampler = runner.train_dataloader.sampler
    assert type(sampler).__name__ == 'EquityWeightedSampler'
    assert (sampler.gfl.eta, sampler.gfl.gamma) == (0.5, 5.0)
    eq = runner.train_dataloader.dataset
    assert eq._claims == dict(sampling='EquityWeightedSampler',
                              binding='EquitySamplingHook')
    assert not [h for h in runner.hooks if type(h).__name__ == 'EquityHook']
    assert osp.isfile(tmp_path / 'w' / 'epoch_1.pth')


@pytest.mark.slow
def test_resampling_resume_with_a_rescored_file_is_refused(tiny_kitti_root,
                                                           tmp_path):
    """The resampling mode has no EquityHook: EquitySamplingHook (in the
    shipped resample config) binds the likelihood file's content to the
    checkpoints, so a file re-scored under the same path -- which the saved
    config cannot show -- is refused on resume unless asked for."""
    from mmengine.runner import Runner
    from test_equity_train import write_tiny_likelihoods

    from mmdet3d_equity.utils.errors import ConfigError
    torch.set_num_threads(1)
    config = osp.join(REPO, 'configs', 'tiny',
                      'pointpillars_tiny-kitti-3class_equity-resample.py')
    work = str(tmp_path / 'w')
    cfg = tiny_cfg(config, work, tiny_kitti_root, epochs=2,
                   extra_hooks=[dict(type='InterruptAfterEpoch', epoch=1)])
    lik = str(tmp_path / 'equity_likelihoods.npz')
    write_tiny_likelihoods(cfg, lik, seed=0)
    cfg.train_dataloader.dataset.likelihood_file = lik
    with pytest.raises(KeyboardInterrupt):
        Runner.from_cfg(cfg).train()
    saved = torch.load(osp.join(work, 'epoch_1.pth'), map_location='cpu',
                       weights_only=False)['equity_sampling']['settings']
    assert saved['sampler'] == 'EquityWeightedSampler'
    write_tiny_likelihoods(cfg, lik, seed=1)  # re-scored, same path

    def resumed(**hook_kw):
        again = tiny_cfg(config, work, tiny_kitti_root, epochs=2,
                         resume=True)
        again.train_dataloader.dataset.likelihood_file = lik
        again.custom_hooks[0].update(hook_kw)
        return again

    with pytest.raises(ConfigError, match=r'EquitySamplingHook: the resumed '
                       r'checkpoint was trained with other settings '
                       r"\(likelihood_content: '"):
        train(resumed())
    assert not osp.isfile(osp.join(work, 'epoch_2.pth'))
    train(resumed(allow_changed_settings=True))
    state = torch.load(osp.join(work, 'epoch_2.pth'), map_location='cpu',
                       weights_only=False)['equity_sampling']
    assert state['settings']['likelihood_content'] != \
        saved['likelihood_content']
    assert [list(h['changes']) for h in state['history']] == [
        ['likelihood_content']]
