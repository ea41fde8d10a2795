"""A checkpoint folder (or a hub id from the local cache) and what it holds besides the weights:
its configuration and tokenizer. No torch: the remote backends read a checkpoint for its
tokenizer and context length (backends/checkpoint_info.py); loader.py loads its weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, ModelConfig
from .hub import HubError, resolve_hub_id
from .tokenizer import Tokenizer, TokenizerError


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the path and what is wrong."""


def resolve_checkpoint(name: str | Path) -> Path:
    """A folder path, or a hub id `owner/name` found in the local Hugging Face cache (offline)."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: not a checkpoint folder (expected a directory)")
        return path
    text = str(name)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        try:
            return resolve_hub_id(text)
        except HubError as exc:
            raise CheckpointError(str(exc)) from None
    raise CheckpointError(f"{path}: no such checkpoint folder")


@dataclass
class CheckpointInfo:
    """A checkpoint's folder, configuration and tokenizer: everything but the weights."""

    path: Path
    config: ModelConfig
    tokenizer: Tokenizer
    untrained: bool  # a random-weight checkpoint made by `loopls model create-tiny`


def read_checkpoint(name: str | Path) -> CheckpointInfo:
    """Resolve `name` and read its config.json and tokenizer (no weights)."""
    folder = resolve_checkpoint(name)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: missing config.json")
    try:
        config = ModelConfig.from_file(config_path)  # its errors start with the path
        raw_config = json.loads(config_path.read_text(encoding="utf-8"))
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    except (OSError, ValueError) as exc:  # changed on disk since it was read
        raise CheckpointError(f"{config_path}: {exc}") from None
    try:
        tokenizer = Tokenizer.from_folder(folder)
    except TokenizerError as exc:
        raise CheckpointError(str(exc)) from None
    return CheckpointInfo(folder, config, tokenizer, bool(raw_config.get("loopls_untrained", False)))
