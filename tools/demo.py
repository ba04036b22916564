"""The main job on the embedded tiny dataset (run by tools/setup.sh). The same
tool as ``python -m mmdet3d_equity.cli.demo``; ``--help`` lists its options."""
from mmdet3d_equity.cli.demo import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
