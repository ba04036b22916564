"""Compare a baseline with method arms over several seeds (train, test, paired
differences). The same tool as ``python -m
mmdet3d_equity.cli.compare_arms``; ``--help`` lists its options."""
from mmdet3d_equity.cli.compare_arms import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
