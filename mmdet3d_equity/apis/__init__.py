from ..utils.config import load_config, resolve_work_dir  # noqa: F401
