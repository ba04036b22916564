"""Measure the first KITTI evaluation in a new process (numba compiling or
cache). The same tool as ``python -m
mmdet3d_equity.cli.benchmark_kitti_eval``; ``--help`` lists its options."""
from mmdet3d_equity.cli.benchmark_kitti_eval import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
