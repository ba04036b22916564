"""The efficacy study (mmdet3d_equity.studies.efficacy.study,
tools/efficacy_study.py): its
rules on synthetic analyses (choice of the arm, the conclusion, weight
ratios, oracle eta) and a reduced study end to end on a toy dataset."""
import os
import os.path as osp
import shutil

import pytest

from mmdet3d_equity.studies.efficacy import report, study

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _row(sl, diffs, variant='dense', row='Car'):
    """An analysis row whose arms have the given (mean, lo, hi, verdict)."""
    return dict(slice=sl, variant=variant, row=row, kind='classes',
                spread={a: dict(n=3, mean=50.0, std=1.0)
                        for a in ['baseline'] + list(diffs)},
                diff={a: dict(n=3, mean=m, std=1.0, ci_low=lo, ci_high=hi,
                              verdict=v) for a, (m, lo, hi, v)
                      in diffs.items()})


def _analysis(rows, arms, seeds):
    return dict(rows=rows, seeds=seeds, spec=dict(
        baseline=dict(name='baseline'), arms=[dict(name=a) for a in arms]))


ARMS = [dict(name='gfl', deployable=True, description='published'),
        dict(name='gfl_eta0.1', deployable=True, description='sweep'),
        dict(name='oracle_x10', deployable=False, description='oracle')]


def test_choice_is_the_deployable_arm_with_the_largest_rare_gain():
    a = _analysis([
        _row('fog', {'gfl': (1.0, -2, 4, 'within noise'),
                     'gfl_eta0.1': (3.0, 1, 5, 'better'),
                     'oracle_x10': (9.0, 6, 12, 'better')}),
        _row('day', {'gfl': (5.0, 4, 6, 'better'),
                     'gfl_eta0.1': (-9.0, -10, -8, 'worse'),
                     'oracle_x10': (0.0, -1, 1, 'within noise')})],
        ['gfl', 'gfl_eta0.1', 'oracle_x10'], [0, 1, 2])
    # the oracle is not deployable; the day slice does not enter the rule
    assert study.choose_arm(a, ARMS) == 'gfl_eta0.1'
    assert study.choose_arm(_analysis([], [], [0]), ARMS) is None


def test_conclusion_follows_the_confirmation_verdicts():
    sel = _analysis([_row('fog', {'gfl': (1.0, -2, 4, 'within noise'),
                                  'gfl_eta0.1': (3.0, 1, 5, 'better')})],
                    ['gfl', 'gfl_eta0.1'], [0, 1, 2])
    facts = dict(chosen='gfl_eta0.1')
    confirmed = _analysis(
        [_row('fog', {'gfl': (0.5, -1, 2, 'within noise'),
                      'gfl_eta0.1': (2.0, 0.5, 3.5, 'better')}),
         _row('day', {'gfl': (0.0, -1, 1, 'within noise'),
                      'gfl_eta0.1': (-0.5, -2, 1, 'within noise')})],
        ['gfl', 'gfl_eta0.1'], [3, 4, 5])
    text = '\n'.join(report.conclusion(sel, confirmed, facts))
    assert ('**Verdict: `gfl_eta0.1` improves the rare slice beyond noise '
            'on seeds that did not choose it, with no loss beyond noise on '
            'the common slices.**') in text
    assert 'seeds [3, 4, 5]' in text and 'seeds [0, 1, 2]' in text
    # the published setting is tested on the selection seeds; its
    # confirmation line appears only when it was re-run
    only_chosen = _analysis(confirmed['rows'], ['gfl_eta0.1'], [3, 4, 5])
    first = report.conclusion(sel, only_chosen, facts)[0]
    assert first == (
        '- Published setting (GFL, eta 1, gamma 5; fixed before the runs, '
        'so the selection seeds test it): `gfl` vs baseline, Car dense AP, '
        'seeds [0, 1, 2]: fog +1.0 [-2.0, +4.0] **within noise**.')
    assert ' Confirmation: `gfl`' in report.conclusion(sel, confirmed,
                                                        facts)[0]
    # a chosen arm that does not hold on the confirmation seeds
    not_confirmed = _analysis(
        [_row('fog', {'gfl': (0.5, -1, 2, 'within noise'),
                      'gfl_eta0.1': (1.0, -1, 3, 'within noise')})],
        ['gfl', 'gfl_eta0.1'], [3, 4, 5])
    text = '\n'.join(report.conclusion(sel, not_confirmed, facts))
    aim = (' The aim (a gain on the rare slice beyond noise with no loss '
           'beyond noise on the common slices) is not met on this data.')
    assert ('- **Verdict: no setting shows a rare-slice gain beyond noise '
            'that holds on the confirmation seeds (and no loss beyond noise '
            'on the common slices: `gfl_eta0.1` is within noise of the '
            'baseline).**' + aim) in text.splitlines()
    # a confirmed rare gain that costs a common slice is not a success
    costly = _analysis(
        [_row('fog', {'gfl': (0.5, -1, 2, 'within noise'),
                      'gfl_eta0.1': (2.0, 0.5, 3.5, 'better')}),
         _row('day', {'gfl': (0.0, -1, 1, 'within noise'),
                      'gfl_eta0.1': (-3.0, -4, -2, 'worse')})],
        ['gfl', 'gfl_eta0.1'], [3, 4, 5])
    text = '\n'.join(report.conclusion(sel, costly, facts))
    assert ('- **Verdict: `gfl_eta0.1` improves the rare slice beyond noise '
            'on seeds that did not choose it, but loses beyond noise on the '
            'common slice(s) day.**' + aim) in text.splitlines()
    # neither the gain holds nor the common slices are kept
    both = _analysis(
        [_row('fog', {'gfl': (0.5, -1, 2, 'within noise'),
                      'gfl_eta0.1': (1.0, -1, 3, 'within noise')}),
         _row('dusk', {'gfl': (0.0, -1, 1, 'within noise'),
                       'gfl_eta0.1': (-3.0, -4, -2, 'worse')})],
        ['gfl', 'gfl_eta0.1'], [3, 4, 5])
    text = '\n'.join(report.conclusion(sel, both, facts))
    assert ('- **Verdict: the rare-slice gain of `gfl_eta0.1` does not hold '
            'beyond noise on the confirmation seeds, and it loses beyond '
            'noise on the common slice(s) dusk.**' + aim) in \
        text.splitlines()


def test_weight_ratio_and_oracle_eta(tmp_path):
    w = dict(slices=dict(fog=dict(weight_per_sample_ratio=1.5),
                         day=dict(weight_per_sample_ratio=0.75)))
    assert report.weight_ratio(w) == 2.0
    assert report.weight_ratio(None) is None
    assert report.weight_ratio(dict(slices=dict(day={}))) is None
    # oracle eta: W(p_fog) / W(1) = (eta + (1 - p_fog)^5) / eta = ratio
    from mmdet3d_equity.models.losses.equity_weight import equity_weight
    from mmdet3d_equity.studies.efficacy.oracle import oracle_likelihoods
    root = str(tmp_path)
    modes = {str(i): m for i, m in enumerate(
        ['day'] * 10 + ['dusk'] * 4 + ['fog'] * 2)}
    import json
    with open(osp.join(root, 'frame_modes.json'), 'w') as f:
        json.dump(dict(modes=modes, split={k: 'train' for k in modes},
                       rare_mode='fog', dataset='kitti'), f)
    assert oracle_likelihoods(root) == {
        k: {'day': 1.0, 'dusk': 0.4, 'fog': 0.2}[m] for k, m in modes.items()}
    for ratio in (3.0, 10.0):
        eta = study.oracle_eta(root, ratio)
        assert equity_weight(0.2, eta, 5.0) / equity_weight(
            1.0, eta, 5.0) == pytest.approx(ratio, rel=1e-12)
    with pytest.raises(ValueError, match='ratio must be > 1'):
        study.oracle_eta(root, 1.0)
    # the oracle_x10 arm as the benchmark builds it: its weight diagnostics
    # give a fog frame 10x the weight of a day frame
    from mmdet3d_equity.benchmark.diagnostics import weight_diagnostics
    from mmdet3d_equity.studies.efficacy.oracle import (
        write_oracle_likelihood_file,
    )
    from mmdet3d_equity.utils.config import load_config
    oracle = osp.join(root, 'oracle_likelihoods.npz')
    write_oracle_likelihood_file(root, oracle)
    [arm] = study.build_arms(root, dict(study.REDUCED, arms=['oracle_x10']),
                             dict(oracle=oracle))
    cfg = load_config(arm['config'], arm['cfg_options'], runner_options=True)
    w = weight_diagnostics(cfg, osp.join(root, 'frame_modes.json'))
    assert w['likelihood_file'] == oracle and w['mode'] == 'loss'
    assert report.weight_ratio(w) == pytest.approx(10.0, rel=1e-9)


def test_unknown_arm_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown study arms \['nope'\]"):
        study.build_arms(str(tmp_path), dict(study.REDUCED, arms=['nope'],
                                             oracle_ratios=[]),
                         dict(oracle='o.npz'))


@pytest.mark.slow
def test_reduced_study_end_to_end(tmp_path):
    from mmdet3d_equity.cli import efficacy_study
    # the smallest study that takes every step: baseline and the published
    # arm, one selection seed and one confirmation seed (the oracle arms'
    # weights are checked without training in test_weight_ratio_and_...)
    size = dict(study.REDUCED, frames=24, epochs=1, select_seeds=[0],
                confirm_seeds=[1], sweep_eta=[], oracle_ratios=[],
                arms=['gfl'])
    doc = str(tmp_path / 'efficacy.md')
    out = study.run_study(str(tmp_path / 'data'), str(tmp_path / 'work'),
                          doc, size, jobs=2)
    text = open(doc).read()
    for heading in ('## Conclusion', '## Setup', '### Arms',
                    '## Does the scorer find the rare mode?',
                    '## Selection phase (seeds [0])',
                    '### Dose-response: is the weight range the limit?',
                    '## Confirmation phase (seeds [1])',
                    '## Whole val split, stock AP'):
        assert heading in text, heading
    # the only deployable arm is chosen and confirmed on the other seed
    assert out['facts']['chosen'] == 'gfl'
    assert out['confirmation']['seeds'] == [1]
    assert [a['name'] for a in out['confirmation']['spec']['arms']] == \
        ['gfl']
    assert '**Slice `fog`** (AP dense' in text
    # the arms of the full design that this subset leaves out are named
    assert ('- Arms of the full design not run in this study (`--arms` '
            'chose the others): `gfl_norm`, `oracle`,') in text
    # the wall time of this invocation, which trained every run
    assert out['facts']['runs_trained'] == (4, 4)
    assert ('this invocation took ' in text and
            ' min of wall time, from preparing the data to this report, and '
            'trained all 4 runs)' in text)
    for fig in ('selection_per_class_dense.png',
                'selection_differences_dense.png', 'dose_response.png'):
        assert osp.isfile(tmp_path / 'efficacy' / fig), fig
    # the weight diagnostics of the published arm against an independent
    # computation from its likelihood file (what the scorer finds on 24
    # frames is data, not asserted)
    import json

    import numpy as np

    from mmdet3d_equity.models.losses.equity_weight import equity_weight
    from mmdet3d_equity.utils import load_likelihood_file
    rec = load_likelihood_file(str(tmp_path / 'data' /
                                   'equity_likelihoods.npz'))
    with open(tmp_path / 'data' / 'frame_modes.json') as f:
        modes = json.load(f)['modes']
    w_of = {m: [equity_weight(p, 1.0, 5.0) for i, p in
                zip(rec['sample_ids'], rec['likelihood']) if modes[i] == m]
            for m in ('fog', 'day')}
    w = out['selection']['weights']['gfl']
    assert report.weight_ratio(w) == pytest.approx(
        np.mean(w_of['fog']) / np.mean(w_of['day']), rel=1e-9)
    # the report is not replaced unasked (refused before any work)
    with pytest.raises(SystemExit) as exc:
        efficacy_study.main(['--data-root', str(tmp_path / 'data'),
                             '--work-dir', str(tmp_path / 'work'), '--doc',
                             doc])
    assert exc.value.code == 2


def test_data_of_another_size_is_refused(tmp_path):
    """The study reuses an existing data root: one generated with another
    size must not be used silently."""
    import json
    size = dict(study.REDUCED, frames=12, val_fraction=1 / 3,
                rare_fraction=0.125, val_rare_fraction=0.5)
    # 8 train frames (1 fog), 4 val frames (2 fog): what this size makes
    modes = {str(i): m for i, m in enumerate(
        ['fog'] + ['day'] * 7 + ['fog'] * 2 + ['dusk', 'day'])}
    split = {str(i): 'train' if i < 8 else 'val' for i in range(12)}
    from equity_tiny_data._common import fog_lidar_style
    fm = dict(modes=modes, split=split, rare_mode='fog', dataset='kitti',
              rare_lidar_style=fog_lidar_style(size['fog_style']))
    with open(tmp_path / 'frame_modes.json', 'w') as f:
        json.dump(fm, f)
    study.check_study_data(str(tmp_path), size)  # matches: no error
    with pytest.raises(study.StudyDataError) as exc:
        study.check_study_data(str(tmp_path), dict(size, frames=24,
                                                   val_rare_fraction=0.25))
    assert str(exc.value) == (
        f'{tmp_path} holds a dataset generated with another size (frames: '
        '12 (this size needs 24); val: 4 (this size needs 8); train fog: 1 '
        '(this size needs 2)); delete it to regenerate it, or pass another '
        '--data-root')
    # the fog LiDAR style is part of the size (the study's denser fog)
    assert size['fog_style'] == study.STUDY_FOG
    default = dict(size, fog_style=None)
    with pytest.raises(study.StudyDataError,
                       match=r"another fog LiDAR style \(\{'keep': 0.75, "
                       r"'att': 14.0.*this size needs \{'keep': 0.75, "
                       r"'att': 22.0"):
        study.check_study_data(str(tmp_path), default)
    del fm['rare_lidar_style']  # data from before the style was recorded
    with open(tmp_path / 'frame_modes.json', 'w') as f:
        json.dump(fm, f)
    with pytest.raises(study.StudyDataError,
                       match=r'another fog LiDAR style \(not recorded;'):
        study.check_study_data(str(tmp_path), size)


def test_why_section_reads_the_arms_against_each_other():
    arms = [dict(name=n, deployable=n != 'oracle', description=n)
            for n in ('gfl', 'gfl_norm', 'oracle', 'gfl_eta0.1')]
    gains = {'gfl': (1.0, -1, 3), 'gfl_norm': (-2.0, -5, 1),
             'oracle': (4.0, 1, 7), 'gfl_eta0.1': (3.0, 0, 6)}
    row = _row('fog', {a: (m, lo, hi, 'within noise')
                       for a, (m, lo, hi) in gains.items()})
    stds = {'gfl': 2.0, 'gfl_norm': 4.0, 'oracle': 1.0, 'gfl_eta0.1': 3.0}
    for a, sd in stds.items():
        row['diff'][a]['std'] = sd
    a = _analysis([row], list(gains), [0, 1, 2])
    ratio = {'gfl': 1.27, 'gfl_norm': 1.27, 'oracle': 1.9, 'gfl_eta0.1': 3.5}
    a['weights'] = {n: dict(slices=dict(
        fog=dict(weight_per_sample_ratio=r), day=dict(
            weight_per_sample_ratio=1.0))) for n, r in ratio.items()}
    facts = dict(arms=arms, train_modes=dict(fog=dict(median=0.229)),
                 oracle_modes=dict(fog=dict(median=0.2)))
    text = '\n'.join(report.why_section(a, facts))
    assert ('a fog frame weighs 1.27 times a day frame (oracle: 1.90). Fog '
            'gain: `gfl` +1.0 [-1.0, +3.0] **within noise**, `oracle` +4.0 '
            '[+1.0, +7.0] **within noise**.') in text
    assert '`gfl_norm` -2.0 [-5.0, +1.0] **within noise**.' in text
    # Spearman of (1.27, 1.27, 1.9, 3.5) against (1, -2, 4, 3): Pearson of
    # the ranks (1.5, 1.5, 3, 4) and (2, 1, 4, 3) = 3.5 / sqrt(4.5 * 5)
    assert 'Over the 4 weighted arms, the fog gain against the fog/day ' \
        f'weight ratio has Spearman rho +{3.5 / (4.5 * 5) ** 0.5:.2f}' in text
    assert 'the largest ratio (3.50, `gfl_eta0.1`) gains +3.0' in text
    # median sd of (1, 2, 3, 4) as the report takes it: sorted[2] = 3.0;
    # t(2, 0.975) = 4.3027 -> 4.3027 * 3 / sqrt(3) = 7.45
    assert 'median standard deviation of 3.0 points over 3 seeds, so an ' \
        'interval excludes 0 only for a mean gain above about t(2) x sd / ' \
        'sqrt(3) = 7.5 points.' in text


def test_wall_time_counts_the_runs_this_invocation_trained(tmp_path):
    # a resumed study says how many runs its wall time covers
    import json
    started = {'baseline/seed0': 100.0, 'gfl/seed0': 100.0,
               'baseline/seed1': 250.0, 'gfl/seed1': None}
    for name, t in started.items():
        d = tmp_path / name
        d.mkdir(parents=True)
        (d / 'run.json').write_text(json.dumps(dict(started=t)))
    assert study.runs_trained_since(str(tmp_path), 200.0) == (1, 4)
    assert study.runs_trained_since(str(tmp_path), 50.0) == (3, 4)
    assert report.wall_clock(dict(seconds=90.0, runs_trained=(1, 4))) == (
        'this invocation took 2 min of wall time, from preparing the data to '
        'this report, and trained 1 of the 4 runs')
    assert report.wall_clock(dict(seconds=3600.0, runs_trained=(4, 4))) == (
        'this invocation took 60 min of wall time, from preparing the data '
        'to this report, and trained all 4 runs')


def test_cli_arms_and_seeds_choose_a_subset_of_the_design(capsys):
    from mmdet3d_equity.cli import efficacy_study
    args = efficacy_study.parse_args(
        ['--arms', 'gfl', 'positive_control', '--select-seeds', '0', '1',
         '--confirm-seeds', '7'])
    assert args.size['arms'] == ['gfl', 'positive_control']
    assert args.size['select_seeds'] == [0, 1]
    assert args.size['confirm_seeds'] == [7]
    # everything else is the full size, unchanged
    assert args.size['epochs'] == study.FULL['epochs']
    assert study.FULL['arms'] is None
    # the report names what the subset leaves out, in the design's order
    full = study.arm_names(study.FULL)
    assert study.omitted_arms(args.size) == [
        a for a in full if a not in ('gfl', 'positive_control')]
    assert study.omitted_arms(study.FULL) == []


@pytest.mark.parametrize('argv, expected', [
    ([], 'python tools/efficacy_study.py'),
    (['--reduced'], 'python tools/efficacy_study.py --reduced'),
    (['--arms', 'gfl', 'positive_control', '--confirm-seeds', '20', '21'],
     'python tools/efficacy_study.py --arms gfl positive_control '
     '--confirm-seeds 20 21'),
    (['--reduced', '--select-seeds', '5', '6'],
     'python tools/efficacy_study.py --reduced --select-seeds 5 6'),
])
def test_the_report_names_the_command_that_ran_it(argv, expected):
    """Reproduce gives the invocation's own arms and seeds, and the command
    it prints parses back to the same size."""
    from mmdet3d_equity.cli import efficacy_study
    size = efficacy_study.parse_args(argv).size
    assert study.study_command(size) == expected
    again = expected.split()[2:]
    assert efficacy_study.parse_args(again).size == size
    lines = report.reproduce_lines(study.study_command(size))
    assert expected in lines
    assert ('python tools/efficacy_study.py --reduced  # minutes: the same '
            'steps at a toy size' in lines) == ('--reduced' not in argv)


def test_every_arm_is_the_full_design_and_an_unset_size_says_so():
    # every arm, named one by one, is the full design: no --arms
    every = study.arm_names(study.FULL)
    assert study.study_command(dict(study.FULL, arms=every)) == (
        'python tools/efficacy_study.py')
    size = dict(study.REDUCED, epochs=1)
    assert study.study_command(size) is None
    lines = report.reproduce_lines(None)
    assert "size the command line does not set" in lines[0]
    assert 'python tools/efficacy_study.py --reduced  # minutes: the same ' \
        'steps at a toy size' in lines


@pytest.mark.parametrize('argv, message', [
    (['--arms', 'gfl', 'nope'], "--arms: unknown study arms ['nope']"),
    (['--select-seeds', '0', '1', '--confirm-seeds', '1', '2'],
     'seeds [1] are both selection and confirmation seeds'),
])
def test_cli_refuses_a_bad_subset(argv, message, capsys):
    from mmdet3d_equity.cli import efficacy_study
    with pytest.raises(SystemExit) as exc:
        efficacy_study.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_oracle_file_is_bound_to_the_data_it_was_written_for(
        tiny_kitti_root, tmp_path):
    """The oracle arm's likelihood file passes the train dataset's binding
    check (it names the info file as the dataset reads it), and is refused
    for other data with the same frame ids."""
    from _toy_equity import _build
    from mmdet3d.utils import register_all_modules

    from mmdet3d_equity.studies.efficacy.oracle import (
        write_oracle_likelihood_file,
    )
    from mmdet3d_equity.utils import load_likelihood_file
    from mmdet3d_equity.utils.config import load_config, package_config
    from mmdet3d_equity.utils.errors import LikelihoodFileError
    register_all_modules(init_default_scope=True)
    out = str(tmp_path / 'oracle.npz')
    write_oracle_likelihood_file(tiny_kitti_root, out)
    assert load_likelihood_file(out)['dataset']['ann_file'] == osp.join(
        tiny_kitti_root, 'kitti_infos_train.pkl')
    os.environ['EQUITY_TINY_KITTI'] = tiny_kitti_root
    try:
        cfg = load_config(package_config(study.SCORED_CFG))
    finally:
        del os.environ['EQUITY_TINY_KITTI']
    inner = cfg.train_dataloader.dataset
    while 'dataset' in inner:
        inner = inner.dataset
    inner = dict(inner, pipeline=[])
    eq = _build(dict(type='EquityDataset', likelihood_file=out,
                     dataset=inner))
    assert len(eq) == len(load_likelihood_file(out)['sample_ids'])
    # the same ids on another data root (a copy of the info file only)
    other = tmp_path / 'other'
    other.mkdir()
    shutil.copy(osp.join(tiny_kitti_root, 'kitti_infos_train.pkl'), other)
    with pytest.raises(LikelihoodFileError, match='belongs to other data'):
        _build(dict(type='EquityDataset', likelihood_file=out,
                    dataset=dict(inner, data_root=str(other) + '/')))
