"""Which checkpoint a model name means, and the embedded models.

The default, `loopls-coder-small`, is a small trained code model shipped inside the package
(engine/model/checkpoints/; how it was made: docs/default-model.md). `tiny-random` is an untrained
tiny checkpoint created on first use in the user cache directory: it exercises every code
path quickly and writes noise, so tests use it and everything that shows its output says it
is untrained. `tiny`, its name before a trained default existed, still means it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_MODEL = "loopls-coder-small"
TINY_RANDOM = "tiny-random"
_TINY_ALIASES = (TINY_RANDOM, "tiny")
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
    """The shipped default checkpoint folder (package data)."""
    return Path(__file__).resolve().parent / "checkpoints" / DEFAULT_MODEL


def tiny_model_dir() -> Path:
    return cache_dir() / "models" / f"tiny-iquestloopcoder-{_TINY_VERSION}"


def ensure_tiny_model() -> Path:
    """The tiny random checkpoint folder, created on first use (atomically, so that two
    servers starting together never see a half-written folder)."""
    target = tiny_model_dir()
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
    """`None`, "" or "loopls-coder-small" -> the shipped default; "tiny-random" (or "tiny") ->
    the random tiny checkpoint; anything else is passed to the loader."""
    if name in (None, "", DEFAULT_MODEL):
        return default_model_dir()
    if name in _TINY_ALIASES:
        return ensure_tiny_model()
    return name
