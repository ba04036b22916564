"""Train a detector, as MMDetection3D's tools/train.py, with mmdet3d-equity.
The same tool as ``python -m mmdet3d_equity.cli.train``; ``--help`` lists
its options."""
from mmdet3d_equity.cli.train import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
