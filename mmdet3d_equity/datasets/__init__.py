from .equity_dataset import EquityDataset, find_equity_dataset  # noqa: F401
from .equity_repeat_sampler import EquityRepeatFactorSampler  # noqa: F401
from .equity_sampler import EquityWeightedSampler  # noqa: F401
