"""Evaluate a checkpoint, as MMDetection3D's tools/test.py. The same tool as
``python -m mmdet3d_equity.cli.test``; ``--help`` lists its options."""
from mmdet3d_equity.cli.test import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
