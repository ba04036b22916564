"""Benchmark the embedding stage of scoring (files on disk to embeddings). The
same tool as ``python -m mmdet3d_equity.cli.benchmark_embedding``;
``--help`` lists its options."""
from mmdet3d_equity.cli.benchmark_embedding import main

if __name__ == '__main__':
    import sys
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
