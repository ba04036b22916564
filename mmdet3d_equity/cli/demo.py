"""The main job on the embedded tiny dataset (run by ``tools/setup.sh``).

A reduced efficacy study: a tiny KITTI dataset whose rare 'fog' mode is
rare in train and enriched in val; appearance likelihoods of the train split
(and the val split scored against them); the baseline and DatasetEquity
as published (GFL, eta 1, gamma 5) trained and tested over 3 seeds with
tools/compare_arms.py; then the per-slice table (fog / dusk / day, dense AP,
mean ± std over seeds, paired differences with 95% intervals). When it has
run, a second call prints the summary again;
``--force`` deletes the demo's data and runs and starts again.
"""
import argparse
import os.path as osp
import shutil

from mmdet3d_equity.apis.errors import one_line_errors


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-root', default=osp.join('data', 'tiny_kitti_demo'),
                   help='the demo dataset (created if missing; default '
                   'relative to the working directory)')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'demo'),
                   help='runs and the summary (default relative to the '
                   'working directory)')
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--force', action='store_true',
                   help='delete the demo data and runs and start again')
    return p.parse_args(argv)


@one_line_errors('demo.py')
def main(argv=None):
    args = parse_args(argv)
    from mmdet3d_equity.studies.efficacy.study import run_demo
    summary = osp.join(args.work_dir, 'summary.md')
    if args.force:
        for d in (args.data_root, args.work_dir):
            if osp.isdir(d):
                shutil.rmtree(d)
    elif osp.isfile(summary):
        with open(summary) as f:
            text = f.read()
        print(text)
        print(f'[demo] already done ({summary}); run it again with '
              '`bash tools/setup.sh --rerun-demo`')
        return text
    text = run_demo(args.data_root, args.work_dir, jobs=args.jobs)
    print(text)
    return text


if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
