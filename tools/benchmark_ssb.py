"""Measure the overhead of dynamic SSB training (iteration time with and
without the hook). The same tool as ``python -m
mmdet3d_equity.cli.benchmark_ssb``; ``--help`` lists its options."""
from mmdet3d_equity.cli.benchmark_ssb import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
