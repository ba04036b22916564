from .equity_weight import equity_weight  # noqa: F401
from .generalized_focal_loss import GeneralizedFocalLoss  # noqa: F401
from .ssb_loss import HeadSSB, SemanticScaleBalancedLoss  # noqa: F401
