"""Benchmark appearance scoring: the default pipeline against the reference
recipe. The same tool as ``python -m mmdet3d_equity.cli.benchmark_scoring``;
``--help`` lists its options."""
from mmdet3d_equity.cli.benchmark_scoring import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
