"""Score another split (val, test) against the training split's fitted scorer.
The same tool as ``python -m mmdet3d_equity.cli.score_split``; ``--help``
lists its options."""
from mmdet3d_equity.cli.score_split import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
