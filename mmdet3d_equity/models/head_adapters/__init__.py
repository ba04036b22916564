"""Head adapters (one module per head family; see base.py and
docs/extending.md)."""
from .grad_scale import (ScaleGradPerSample, scale_grad_by_index,  # noqa
                         scale_grad_per_sample)
from .base import (HEAD_ADAPTERS, BEVHeadAdapter,  # noqa: F401
                   FeatureSettings, HeadAdapter, RefusedHeadAdapter,
                   UnsupportedHeadError, adapter_for_head, find_head,
                   resolve_dense_head, resolve_weighted_heads, sample_map)
from .anchor3d import Anchor3DHeadAdapter  # noqa: F401
from .anchor3d_variants import (FreeAnchor3DHeadAdapter,  # noqa: F401
                                ShapeAwareHeadAdapter)
from .center import CenterHeadAdapter  # noqa: F401
from .fcos_mono3d import FCOSMono3DHeadAdapter  # noqa: F401
from .pgd import PGDHeadAdapter  # noqa: F401
from .smoke import SMOKEMono3DHeadAdapter  # noqa: F401
from .query import (DETRHeadAdapter, QueryHeadAdapter,  # noqa: F401
                    register_query_head)
from .roi import (PartAggregationROIHeadAdapter,  # noqa: F401
                  PVRCNNRoiHeadAdapter)
from .transfusion import TransFusionHeadAdapter  # noqa: F401
