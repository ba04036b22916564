"""The command-line tools, one module each: ``python -m
mmdet3d_equity.cli.<tool>`` (``tools/<tool>.py`` in a checkout calls the
same ``main``)."""
from . import _startup  # noqa: F401  (the tools' warning filters)
