"""The backend interface. The language server depends on this and nothing else of the engine.

A backend owns one model. It exposes the model's tokenizer (prompts are built and budgeted
client-side, FIM included, for every backend), the context limit (prompt plus generated
tokens), and an asynchronous request API: `submit` returns a `Stream` of token ids whose
`result()` is a `RequestOutput`; cancelling the stream aborts the request and frees what it
held. `submit` must be called from a thread with a running event loop.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..model.sampling_params import SamplingParams
from ..model.tokenizer import Tokenizer
from ..serving.priority import Priority
from ..serving.request_output import RequestOutput
from .config import BACKENDS, BackendConfig, BackendError


@dataclass(frozen=True)
class BackendInfo:
    backend: str  # "native" | "openai" | "vllm"
    model: str  # the model as named in the options
    path: str | None  # checkpoint folder, or the server's URL
    model_type: str | None
    device: str | None
    untrained: bool  # random weights: output is noise, and the user is told so
    # serves max_tokens 0: the prompt goes into its prefix cache and no token is generated
    # (the native engine); a remote server generates at least one token per request
    prefill_only: bool = False


class LoadStop:
    """Stops a backend's load from another thread, e.g. when the process that asked for it is
    about to exit: `stop()` shuts down every engine the load registered (an engine whose
    worker processes are still starting has them killed) and any it registers afterwards, so
    that the load fails with BackendError and no engine process outlives the caller. An
    engine on a thread of this process needs none: it ends with the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stops: list[Callable[[], None]] = []
        self.stopped = False

    def register(self, stop: Callable[[], None]) -> None:
        """Call `stop` on `stop()` (at once if that came already)."""
        with self._lock:
            if not self.stopped:
                self._stops.append(stop)
                return
        stop()

    def stop(self) -> None:
        with self._lock:
            self.stopped, stops, self._stops = True, self._stops, []
        for stop in stops:
            stop()


class Stream(Protocol):
    request_id: str

    def __aiter__(self) -> AsyncIterator[int]: ...

    async def result(self) -> RequestOutput: ...

    def cancel(self) -> None: ...


def checked_prompt(prompt_ids: list[int], max_tokens: int, context_limit: int) -> list[int]:
    """The prompt as plain ints, or ValueError for one that can never be served: empty,
    asking for no token, or too long for the model's context with `max_tokens` more (the remote backends' check
    before a request is sent; the native engine's scheduler makes the same one)."""
    prompt_ids = [int(t) for t in prompt_ids]
    if not prompt_ids:
        raise ValueError("empty prompt")
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1: a remote model server has no prefill-only request")
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
