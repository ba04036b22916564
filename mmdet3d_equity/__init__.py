"""mmdet3d-equity: DatasetEquity and semantic-scale balancing for
MMDetection3D.

Importing this package registers its datasets, losses and hooks in
MMDetection3D's registries, so configs can switch it on with::

    custom_imports = dict(imports=['mmdet3d_equity'],
                          allow_failed_imports=False)
"""
from .utils.compat import apply_compat
from .version import __version__

apply_compat()  # before anything builds mmdet3d pipelines
# what training needs; the scoring pipeline, the figures and the tiny-data
# generators (equity_tiny_data) are imported only by the tools that use them
from . import datasets, engine, evaluation, models  # noqa: E402,F401
from .models.losses.equity_weight import equity_weight  # noqa: E402
from .semantic_scale.measures import semantic_scale  # noqa: E402

__all__ = ['__version__', 'equity_weight', 'semantic_scale']
