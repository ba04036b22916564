"""Run the efficacy study of DatasetEquity on tiny KITTI and write its report.
The same tool as ``python -m mmdet3d_equity.cli.efficacy_study``; ``--help``
lists its options."""
from mmdet3d_equity.cli.efficacy_study import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
