"""mmdet3d-equity: DatasetEquity and semantic-scale balancing for MMDetection3D.

Importing this package registers its datasets, losses and hooks in
MMDetection3D's registries, so configs can switch it on with::

    custom_imports = dict(imports=['mmdet3d_equity'],
                          allow_failed_imports=False)
"""
from .version import __version__
from .utils.compat import apply_compat

apply_compat()  # before anything builds mmdet3d pipelines
# what training needs; the scoring pipeline, the figures and the tiny-data
# generators (equity_tiny_data) are imported only by the tools that use them
from . import datasets, engine, evaluation, models  # noqa: F401 (registers)
from .models.losses.equity_weight import equity_weight  # noqa: F401
from .semantic_scale.measures import semantic_scale  # noqa: F401

__all__ = ['__version__', 'equity_weight', 'semantic_scale']
