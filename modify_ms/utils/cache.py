"""The per-user cache folder: work files that belong to no output (compile caches, stage-2
state, FID statistics, MindSpore's debug dumps). No imports beyond os: read at import time."""
import os

CACHE_ENV = "MODIFY_MS_CACHE"


def cache_root() -> str:
    """``$MODIFY_MS_CACHE``, else ``$XDG_CACHE_HOME/modify_ms``, else ``~/.cache/modify_ms``."""
    return os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "modify_ms")
