"""Rewrite a likelihood file in the current format. The same tool as ``python
-m mmdet3d_equity.cli.convert_likelihoods``; ``--help`` lists its options."""
from mmdet3d_equity.cli.convert_likelihoods import main

if __name__ == '__main__':
    main()
