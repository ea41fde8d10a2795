"""What a finished request returns: plain data, without torch (the language server reads it
without importing the engine)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestOutput:
    request_id: str
    prompt_tokens: int
    token_ids: list[int]
    finish_reason: str  # "stop" | "length" | "cancelled" | "error"
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    # params.logprobs set: per token of token_ids its log-probability and the most likely
    # (id, log-probability) pairs of its step; None otherwise
    logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None
