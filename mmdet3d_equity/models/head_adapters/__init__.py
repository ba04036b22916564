"""Head adapters (one module per head family; see base.py and
docs/extending.md)."""
from .base import (HEAD_ADAPTERS, BEVHeadAdapter,  # noqa: F401
                   FeatureSettings, HeadAdapter, UnsupportedHeadError,
                   adapter_for_head, find_head, resolve_dense_head,
                   sample_map)
from .anchor3d import Anchor3DHeadAdapter  # noqa: F401
from .center import CenterHeadAdapter  # noqa: F401
from .fcos_mono3d import FCOSMono3DHeadAdapter  # noqa: F401
from .pgd import PGDHeadAdapter  # noqa: F401
from .smoke import SMOKEMono3DHeadAdapter  # noqa: F401
