"""Write a small synthetic KITTI or nuScenes dataset in the real layout. The
same tool as ``python -m mmdet3d_equity.cli.create_tiny_dataset``;
``--help`` lists its options."""
from mmdet3d_equity.cli.create_tiny_dataset import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
