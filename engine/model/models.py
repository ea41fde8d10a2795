"""Which checkpoint a model name means, and the embedded default.

Until a trained default model exists, the default is a tiny random checkpoint created on
first use in the user cache directory. Everything that shows its output says it is
untrained.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_MODEL = "tiny"
# Bump when create_tiny's output changes so that caches are rebuilt.
_TINY_VERSION = "v2"


def cache_dir() -> Path:
    """$LOOPLS_CACHE_DIR, else the platform's user cache directory for loopls."""
    env = os.environ.get("LOOPLS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("loopls"))


def default_model_dir() -> Path:
    return cache_dir() / "models" / f"tiny-iquestloopcoder-{_TINY_VERSION}"


def ensure_default_model() -> Path:
    """The default checkpoint folder, created on first use (atomically, so that two servers
    starting together never see a half-written folder)."""
    target = default_model_dir()
    if (target / "config.json").is_file():
        return target
    from .tiny import create_tiny

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        create_tiny(staging)
        try:
            staging.rename(target)
        except OSError:  # another process won the race; its folder is identical
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model_name(name: str | None) -> str | Path:
    """`None` or "tiny" -> the embedded default folder; anything else is passed to the loader."""
    if name in (None, "", DEFAULT_MODEL):
        return ensure_default_model()
    return name
