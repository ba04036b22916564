"""Write a slice file of nuScenes samples from their scene descriptions. The
same tool as ``python -m mmdet3d_equity.cli.nuscenes_slices``; ``--help``
lists its options."""
from mmdet3d_equity.cli.nuscenes_slices import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
