from . import head_adapters, losses  # noqa: F401
