"""Reading an OpenAI-style /v1/completions event stream (server-sent events)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx

from ..model.tokenizer import Tokenizer

# OpenAI finish reasons -> the engine's ("stop" | "length" | "cancelled" | "error").
_FINISH = {"stop": "stop", "length": "length", "abort": "cancelled", "cancelled": "cancelled", "error": "error"}


class SseError(ValueError):
    """The server sent an error event or something that is not a completion chunk."""


async def read_completion_events(
    response: httpx.Response, tokenizer: Tokenizer
) -> AsyncIterator[tuple[list[int], str | None]]:
    """(new token ids, finish reason or None) per chunk, until `data: [DONE]`.

    Servers that return token ids (vLLM and `loopls serve` with `return_token_ids`) give
    exact ids; for the others the chunk's text is tokenized here, which decodes back to the
    same text.
    """
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping"), event names
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            chunk = json.loads(payload)
        except json.JSONDecodeError:
            raise SseError(f"not JSON in the event stream: {payload[:120]!r}") from None
        if not isinstance(chunk, dict):
            raise SseError(f"unexpected event: {payload[:120]!r}")
        if "error" in chunk:
            error = chunk["error"]
            raise SseError(error.get("message", str(error)) if isinstance(error, dict) else str(error))
        for choice in chunk.get("choices") or ():
            ids = choice.get("token_ids")
            if ids is None:
                ids = tokenizer.encode(choice.get("text") or "")
            finish = choice.get("finish_reason")
            yield [int(t) for t in ids], (_FINISH.get(finish, "stop") if finish else None)
