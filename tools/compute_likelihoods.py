"""Score the training split of a dataset config (per-sample appearance
likelihoods). The same tool as ``python -m
mmdet3d_equity.cli.compute_likelihoods``; ``--help`` lists its options."""
from mmdet3d_equity.cli.compute_likelihoods import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
