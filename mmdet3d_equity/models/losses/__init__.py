from .equity_weight import equity_weight  # noqa: F401
