"""What a remote or vLLM backend needs from a local checkpoint folder without loading its
weights: the folder itself, its tokenizer, its model type, context length and dtype."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..model.checkpoint import CheckpointError, resolve_checkpoint
from ..model.models import resolve_model_name
from ..model.tokenizer import Tokenizer, TokenizerError
from .base import BackendError


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    tokenizer: Tokenizer
    model_type: str | None
    max_positions: int | None  # max_position_embeddings, else the tokenizer's model_max_length
    dtype: str | None  # torch_dtype of config.json
    untrained: bool


def read_checkpoint_info(name: str | None) -> CheckpointInfo:
    """The folder `name` names (None: the shipped default; "tiny-random", a folder or a cached hub id) and its tokenizer."""
    try:
        path = Path(resolve_checkpoint(resolve_model_name(name)))
        tokenizer = Tokenizer.from_folder(path)
    except (CheckpointError, TokenizerError, OSError) as exc:
        raise BackendError(str(exc)) from None
    config = _read_json(path / "config.json")
    tok_config = _read_json(path / "tokenizer_config.json")
    positions = config.get("max_position_embeddings") or tok_config.get("model_max_length")
    # Tokenizers without a limit store a huge sentinel (1e30) as model_max_length.
    max_positions = int(positions) if isinstance(positions, (int, float)) and 0 < positions < 1 << 24 else None
    return CheckpointInfo(
        path=path,
        tokenizer=tokenizer,
        model_type=config.get("model_type"),
        max_positions=max_positions,
        dtype=config.get("torch_dtype") or config.get("dtype"),
        untrained=bool(config.get("loopls_untrained", False)),
    )


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
