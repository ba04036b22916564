"""Measure the per-class semantic scale of a training split under a trained
detector. The same tool as ``python -m mmdet3d_equity.cli.semantic_scale``;
``--help`` lists its options."""
from mmdet3d_equity.cli.semantic_scale import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
