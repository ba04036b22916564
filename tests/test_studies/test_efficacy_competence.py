"""The efficacy report's competence check, DatasetEquity's claims, the
smallest resolvable gains and the positive control (synthetic analyses),
the new arms and the positive control's data check."""
import json
import os.path as osp

import pytest

from mmdet3d_equity.studies.efficacy import report, study

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _row(sl, variant, row, base, diffs=None, std=1.0, n=6):
    """base: (mean, std) of the baseline; diffs: arm -> (mean, sd, lo, hi,
    verdict)."""
    diffs = diffs or {}
    return dict(slice=sl, variant=variant, row=row, kind='classes',
                spread=dict(baseline=dict(n=n, mean=base[0], std=base[1]),
                            **{a: dict(n=n, mean=base[0] + d[0], std=std)
                               for a, d in diffs.items()}),
                diff={a: dict(n=n, mean=m, std=sd, ci_low=lo, ci_high=hi,
                              verdict=v)
                      for a, (m, sd, lo, hi, v) in diffs.items()})


def _analysis(rows, arms, seeds=(0, 1, 2, 3, 4, 5)):
    return dict(rows=rows, seeds=list(seeds), spec=dict(
        baseline=dict(name='baseline'), arms=[dict(name=a) for a in arms]))


def _competent(car=(90.0, 2.0), ped=(60.0, 3.0), cyc=(45.0, 4.0),
               fog=70.0, day=95.0):
    return [_row('all', 'stock', 'Car', car),
            _row('all', 'stock', 'Pedestrian', ped),
            _row('all', 'stock', 'Cyclist', cyc),
            _row('fog', 'dense', 'Car', (fog, 3.0)),
            _row('day', 'dense', 'Car', (day, 1.0))]


def test_competence_check_passes_and_fails_with_a_clear_line():
    ok = report.competence(_analysis(_competent(), []), study.COMPETENCE)
    assert ok['ok'] and ok['line'].startswith(
        '- **Competence check: passed**')
    assert [c['ok'] for c in ok['checks']] == [True] * 5
    # each threshold fails on its own, named in the line
    for kw, name in ((dict(car=(84.9, 2.0)), 'Car whole-split stock AP '
                      '(mean)'),
                     (dict(car=(90.0, 3.1)), 'Car whole-split stock AP '
                      '(seed std)'),
                     (dict(ped=(49.0, 1.0)), 'Pedestrian whole-split stock '
                      'AP (mean)'),
                     (dict(cyc=(39.9, 1.0)), 'Cyclist whole-split stock AP '
                      '(mean)'),
                     (dict(fog=96.0), 'Car dense AP: fog below day')):
        bad = report.competence(_analysis(_competent(**kw), []),
                                study.COMPETENCE)
        assert not bad['ok']
        assert bad['line'] == (
            f'- **Competence check: FAILED** ({name}): the baseline is '
            'below the thresholds fixed before the runs, so no verdict on '
            'this page is evidence for or against the method.')
        assert '**FAILED**' in report.competence_table(bad)
    # a missing row is a failure, not a pass
    miss = report.competence(_analysis(_competent()[1:], []),
                             study.COMPETENCE)
    assert not miss['ok'] and 'Car whole-split stock AP (mean)' in \
        miss['line']
    # the thresholds fixed before the runs
    assert study.COMPETENCE['min_mean'] == dict(Car=85.0, Pedestrian=50.0,
                                                Cyclist=40.0)
    assert study.COMPETENCE['max_car_std'] == 3.0


def test_claims_resolvable_gains_and_positive_control():
    better = (3.0, 2.0, 1.0, 5.0, 'better')
    within = (1.0, 2.0, -1.0, 3.0, 'within noise')
    worse = (-3.0, 2.0, -5.0, -1.0, 'worse')
    rows = [_row('fog', 'dense', 'Car', (70, 3),
                 dict(gfl=better, x=within, positive_control=better)),
            _row('all', 'stock', 'Cyclist', (45, 4),
                 dict(gfl=better, x=better, positive_control=within)),
            _row('day', 'dense', 'Car', (95, 1),
                 dict(gfl=within, x=worse, positive_control=within)),
            _row('dusk', 'dense', 'Car', (90, 1),
                 dict(gfl=within, x=within, positive_control=within)),
            _row('all', 'stock', 'Car', (90, 2),
                 dict(gfl=within, x=within, positive_control=within)),
            _row('all', 'stock', 'Pedestrian', (60, 3),
                 dict(gfl=within, x=within, positive_control=within))]
    a = _analysis(rows, ['gfl', 'x', 'positive_control'])
    c = study.CLAIMS
    assert [report.claim_holds(a, 'gfl', c[k]) for k in 'abc'] == \
        [True, True, True]
    assert [report.claim_holds(a, 'x', c[k]) for k in 'abc'] == \
        [False, True, False]
    assert report.claim_holds(a, 'nope', c['a']) is None
    table = report.claims_table(a, ['gfl', 'x'], c)
    assert '**holds**: fog Car +3.0 [+1.0, +5.0] **better**' in table
    assert 'does not hold: day Car -3.0 [-5.0, -1.0] **worse**' in table
    # the smallest resolvable gain: t(5) x sd / sqrt(6), sd = 2
    body = report.resolvable_gains(a, study.PRIMARY[:1])
    assert body == [['Car dense AP, fog slice', '70.0 ± 3.0', '6',
                     f'{2.5705818 * 2 / 6 ** 0.5:.1f}']]
    assert body[0][3] == '2.1'
    assert report.control_line(a).startswith(
        '- **Positive control: the testbed can show a fog gain.**')
    rows[0]['diff']['positive_control'].update(verdict='within noise',
                                               ci_low=-1.0)
    assert 'could not show a fog gain' in report.control_line(a)
    assert report.control_line(_analysis([], [])) is None


def test_new_arms_and_their_configs(tmp_path):
    size = dict(study.FULL, arms=['positive_control', 'repeat_factor',
                                  'gfl_detector'])
    files = dict(likelihoods='l.npz', oracle='o.npz',
                 detector_likelihoods='d.npz')
    arms = {a['name']: a for a in study.build_arms(str(tmp_path), size,
                                                   files)}
    assert set(arms) == {'positive_control', 'repeat_factor',
                         'gfl_detector'}
    assert not arms['positive_control']['deployable']
    assert arms['repeat_factor']['deployable']
    assert arms['gfl_detector']['cfg_options'] == {
        'train_dataloader.dataset.likelihood_file': 'd.npz'}
    with pytest.raises(ValueError, match='unknown study arms'):
        study.arm_names(dict(study.FULL, arms=['nope']))
    # the control config differs from the baseline only by its train root
    from mmengine.config import Config
    cfgs = osp.join(REPO, 'configs', 'tiny', 'study')
    import os
    os.environ['EQUITY_TINY_KITTI_CONTROL'] = '/ctl'
    try:
        ctl = Config.fromfile(osp.join(
            cfgs, 'pointpillars_tiny-kitti-study_positive-control.py'))
    finally:
        del os.environ['EQUITY_TINY_KITTI_CONTROL']
    base = Config.fromfile(osp.join(cfgs, 'pointpillars_tiny-kitti-study.py'))
    c = ctl.train_dataloader.dataset.dataset.to_dict()
    b = base.train_dataloader.dataset.dataset.to_dict()
    assert c['data_root'] == '/ctl/'
    assert c['pipeline'][2]['db_sampler']['info_path'] == \
        '/ctl/kitti_dbinfos_train.pkl'
    for d in (c, b):
        d['data_root'] = None
        d['pipeline'][2]['db_sampler'].update(data_root=None, info_path=None)
    assert c == b
    assert ctl.model == base.model
    assert ctl.test_evaluator == base.test_evaluator
    assert ctl.test_dataloader == base.test_dataloader


def test_positive_control_data_check(tmp_path):
    def write(root, modes, split, att=22.0):
        os.makedirs(root, exist_ok=True)
        with open(osp.join(root, 'frame_modes.json'), 'w') as f:
            json.dump(dict(modes=modes, split=split, rare_mode='fog',
                           dataset='kitti',
                           rare_lidar_style=dict(att=att)), f)

    import os
    split = {str(i): 'train' if i < 10 else 'val' for i in range(14)}
    main = {str(i): 'day' for i in range(14)}
    main.update({'0': 'fog', '10': 'fog', '11': 'fog'})
    ctl = dict(main, **{'1': 'fog', '2': 'fog', '3': 'fog'})
    write(str(tmp_path / 'm'), main, split)
    write(str(tmp_path / 'c'), ctl, split)
    study.check_control_data(str(tmp_path / 'm'), str(tmp_path / 'c'))
    write(str(tmp_path / 'c'), dict(ctl, **{'12': 'fog', '3': 'day'}), split)
    with pytest.raises(study.StudyDataError) as e:
        study.check_control_data(str(tmp_path / 'm'), str(tmp_path / 'c'))
    assert str(e.value) == (
        f"{tmp_path / 'c'} is not the positive control of {tmp_path / 'm'} "
        "(the val frames' modes differ; 3 train fog frames, not 4 x 1); "
        'delete it to regenerate it')
    write(str(tmp_path / 'c'), ctl, split, att=14.0)  # another fog
    with pytest.raises(study.StudyDataError,
                       match=r'\(the fog LiDAR style differs\)'):
        study.check_control_data(str(tmp_path / 'm'), str(tmp_path / 'c'))
