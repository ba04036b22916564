from .equity_weight import equity_weight  # noqa: F401
from .ssb_loss import SemanticScaleBalancedLoss  # noqa: F401
