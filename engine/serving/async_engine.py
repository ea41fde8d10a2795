"""Async request API: the engine loop runs in a worker thread, off the caller's event loop.

Usage from asyncio (e.g. the language server)::

    engine = AsyncEngine.from_loaded(load_checkpoint(path), SchedulerConfig(num_blocks=512))
    engine.start()
    stream = engine.submit(prompt_ids, SamplingParams(max_tokens=64),
                           priority=Priority.INLINE, supersede=f"inline:{uri}")
    async for token_id in stream:          # token ids as they are produced
        ...
    out = await stream.result()            # RequestOutput: tokens, finish_reason, metrics
    engine.cancel(stream.request_id)       # thread-safe; or stream.cancel()
    engine.shutdown()

- `submit` must be called with a running event loop in the calling thread; it validates the
  request at once and raises `AdmissionError` (a ValueError) for one that can never fit.
- `supersede=key`: submitting again with the same key cancels the previous request of that
  key (typing: each keystroke's request replaces the last).
- Cancelling frees the request's KV blocks before the next scheduler step; its stream ends
  with finish_reason "cancelled".
- If a step fails (out of memory, a kernel error), the requests in that step fail: their
  stream raises `EngineError`, `result()` returns finish_reason "error" with the message,
  and the engine keeps serving the others.
- Observability: `RequestOutput.metrics` (queue, prefill, first-token and decode times, cache
  hit tokens, draft acceptance, blocks) and `engine.stats()` (block usage, queue lengths);
  every finished request is also logged at DEBUG on the "loopls.engine" logger.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from .core import EngineCore, StepEvent
from ..model.sampling_params import SamplingParams
from .priority import Priority
from .request_frontend import RequestFrontend
from .request_output import RequestOutput
from .scheduler import SchedulerConfig
from .sequence import Sequence

log = logging.getLogger("loopls.engine")


class AsyncEngine(RequestFrontend):
    def __init__(
        self,
        model,
        config: SchedulerConfig | None = None,
        *,
        eos_ids: tuple[int, ...] = (),
        decode: Callable[[list[int]], str] | None = None,
    ) -> None:
        super().__init__()
        self.core = EngineCore(model, config, eos_ids, decode)
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stats = self.core.stats()

    @classmethod
    def from_loaded(cls, lm, config: SchedulerConfig | None = None) -> AsyncEngine:
        """From a `loader.LoadedModel`: EOS ids and string stops come from its tokenizer."""
        return cls(lm.model, config, eos_ids=tuple(lm.tokenizer.special.eos_ids), decode=lm.tokenizer.decode)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="loopls-engine", daemon=True)
            self._thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the worker; live requests end as cancelled."""
        if self._thread is not None:
            self._inbox.put(("stop", None))
            self._thread.join(timeout)
            self._thread = None

    async def __aenter__(self) -> AsyncEngine:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.shutdown)

    def _check(self, prompt_ids: list[int], params: SamplingParams) -> None:
        self.core.check(prompt_ids, params)

    def _send(self, command: tuple[str, Any]) -> None:
        self._inbox.put(command)

    # -- worker thread -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            # Block while idle; otherwise take whatever arrived since the last step.
            if not self._handle(self._inbox.get() if not self.core.has_work else None):
                break
            try:
                events = self.core.step()
            except Exception as exc:  # noqa: BLE001 - the worker must survive a broken step
                log.exception("engine loop failed; failing every live request")
                events = [StepEvent(s, [], True) for s in self.core.fail_all(exc)]
            with self._lock:
                self._stats = self.core.stats()
            self._dispatch(events)
        self._cancel_everything()

    def _cancel_everything(self) -> None:
        """On shutdown: live requests and those still queued end as cancelled."""
        for seq in list(self.core.requests.values()):
            self.core.abort(seq.request_id)
            self._dispatch([StepEvent(seq, [], True)])
        while True:
            try:
                kind, arg = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                seq = Sequence(arg[0], arg[1], arg[2], arg[3], arg[4], finish_reason="cancelled")
                self._dispatch([StepEvent(seq, [], True)])

    def _handle(self, first: tuple[str, Any] | None) -> bool:
        """Apply queued commands; False when asked to stop."""
        commands = [first] if first is not None else []
        while True:
            try:
                commands.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        for i, (kind, arg) in enumerate(commands):
            if kind == "stop":
                for later in commands[i + 1 :]:  # still answered, as cancelled, on the way out
                    self._inbox.put(later)
                return False
            if kind == "add":
                self._add(*arg)
            elif kind == "cancel":
                seq = self.core.abort(arg)
                if seq is not None:
                    with self._lock:
                        self._stats = self.core.stats()
                    self._dispatch([StepEvent(seq, [], True)])
        return True

    def _add(self, request_id: str, prompt_ids: list[int], params: SamplingParams, priority: Priority, speculate: bool) -> None:
        try:
            self.core.add(request_id, prompt_ids, params, priority, speculate)
        except ValueError as exc:  # admission rules re-checked in the worker
            seq = Sequence(request_id, prompt_ids, params, priority, speculate)
            seq.finish_reason, seq.error = "error", str(exc)
            self._dispatch([StepEvent(seq, [], True)])

    def _dispatch(self, events: list[StepEvent]) -> None:
        for ev in events:
            self._deliver(ev.seq.request_id, ev.new_tokens, request_output(ev.seq) if ev.finished else None)


def request_output(seq: Sequence) -> RequestOutput:
    """A finished (or failed, or cancelled) sequence as the caller sees it."""
    return RequestOutput(
        request_id=seq.request_id,
        prompt_tokens=len(seq.prompt_ids),
        token_ids=list(seq.output_ids),
        finish_reason=seq.finish_reason or "cancelled",
        error=seq.error,
        metrics=seq.metrics.as_dict(),
        logprobs=list(seq.logprobs) if seq.params.logprobs is not None else None,
        top_logprobs=list(seq.top_logprobs) if seq.params.logprobs is not None else None,
    )
