"""The backend interface. The language server depends on this and nothing else of the engine.

A backend owns one model. It exposes the model's tokenizer (prompts are built and budgeted
client-side, FIM included, for every backend), the context limit (prompt plus generated
tokens), and an asynchronous request API: `submit` returns a `Stream` of token ids whose
`result()` is a `RequestOutput`; cancelling the stream aborts the request and frees what it
held. `submit` must be called from a thread with a running event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..model.sampler import SamplingParams
from ..model.tokenizer import Tokenizer
from ..serving.async_engine import RequestOutput
from ..serving.sequence import Priority


BACKENDS = ("native", "openai", "vllm")


class BackendError(RuntimeError):
    """The backend cannot be loaded or reached; the message says why, in one line."""


@dataclass(frozen=True, kw_only=True)
class BackendConfig:
    """What `load_backend` needs; the language server builds it from its options."""

    kind: str = "native"  # one of BACKENDS
    # native, vllm: checkpoint folder, cached hub id, "tiny-random" or None (the shipped default). openai: the name the server
    # serves the model under (None: the first model the server lists).
    model: str | None = None
    device: str = "auto"  # native only
    context_tokens: int = 2048  # the caller's prompt budget (sizes the native KV pool)
    url: str | None = None  # openai: base URL of the API, e.g. http://127.0.0.1:8000/v1
    api_key: str | None = None  # openai: sent as a bearer token
    # openai: checkpoint folder or cached hub id holding the model's tokenizer (prompts are
    # tokenized here); None: the model name, when that is a folder or a cached hub id.
    tokenizer: str | None = None
    context_limit: int | None = None  # None: what the server or the checkpoint says
    timeout_s: float = 30.0  # openai: connect and between-tokens timeout
    retries: int = 3  # openai: attempts on connection errors, with exponential backoff
    tensor_parallel_size: int = 1  # native, vllm: GPUs the model is split over

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise BackendError(f"unknown backend {self.kind!r} (expected one of: {', '.join(BACKENDS)})")
        if self.timeout_s <= 0 or self.retries < 1 or self.tensor_parallel_size < 1:
            raise BackendError("timeout must be positive, retries and tensor_parallel_size at least 1")
        if self.context_limit is not None and self.context_limit < 2:
            raise BackendError(f"context limit {self.context_limit} is too small")


@dataclass(frozen=True)
class BackendInfo:
    backend: str  # "native" | "openai" | "vllm"
    model: str  # the model as named in the options
    path: str | None  # checkpoint folder, or the server's URL
    model_type: str | None
    device: str | None
    untrained: bool  # random weights: output is noise, and the user is told so


class Stream(Protocol):
    request_id: str

    def __aiter__(self) -> AsyncIterator[int]: ...

    async def result(self) -> RequestOutput: ...

    def cancel(self) -> None: ...


def checked_prompt(prompt_ids: list[int], max_tokens: int, context_limit: int) -> list[int]:
    """The prompt as plain ints, or ValueError for one that can never be served: empty, or
    too long for the model's context with `max_tokens` more (the remote backends' check
    before a request is sent; the native engine's scheduler makes the same one)."""
    prompt_ids = [int(t) for t in prompt_ids]
    if not prompt_ids:
        raise ValueError("empty prompt")
    if len(prompt_ids) + max_tokens > context_limit:
        raise ValueError(
            f"prompt of {len(prompt_ids)} tokens plus max_tokens {max_tokens} exceeds the "
            f"model's context of {context_limit} tokens"
        )
    return prompt_ids


class Backend(Protocol):
    info: BackendInfo
    tokenizer: Tokenizer
    context_limit: int  # prompt + generated tokens

    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        priority: Priority = Priority.INLINE,
        supersede: str | None = None,
    ) -> Stream:
        """Start a request; raises ValueError for one that can never be served (too long)."""
        ...

    def stats(self) -> dict[str, Any]: ...

    def shutdown(self) -> None: ...


__all__ = ["BACKENDS", "Backend", "BackendConfig", "BackendError", "BackendInfo", "Priority", "RequestOutput", "SamplingParams", "Stream"]
