
from .equity_hook import EquityHook  # noqa: F401
from .equity_sampling_hook import EquitySamplingHook  # noqa: F401
from .ssb_hook import SemanticScaleBalanceHook  # noqa: F401
