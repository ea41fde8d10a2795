"""The request API's caller side, without torch: `RequestFrontend` (streams, superseding keys,
the admission check), the `RequestStream` a request returns and `EngineError`. The engine core
behind it runs on a thread (async_engine.AsyncEngine) or in worker processes
(parallel_engine.ParallelEngine); the remote backends (backends/openai.py, vllm.py) stream
through the same `RequestStream`."""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

from ..model.sampling_params import SamplingParams
from .priority import Priority
from .request_output import RequestOutput


class EngineError(RuntimeError):
    """The engine failed while serving this request (the engine itself keeps running)."""


_END = object()


class RequestStream:
    """Async iterator over one request's token ids; `result()` gives the final output."""

    def __init__(self, request_id: str, engine: RequestFrontend, loop: asyncio.AbstractEventLoop) -> None:
        self.request_id = request_id
        self._engine = engine
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._done: asyncio.Future[RequestOutput] = loop.create_future()

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> int:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # iterating again ends again
            out = self._done.result()
            if out.finish_reason == "error":
                raise EngineError(out.error or "engine error")
            raise StopAsyncIteration
        return item  # type: ignore[return-value]

    async def result(self) -> RequestOutput:
        return await asyncio.shield(self._done)

    def cancel(self) -> None:
        self._engine.cancel(self.request_id)

    @property
    def done(self) -> bool:
        return self._done.done()

    # Called on the caller's loop via call_soon_threadsafe.
    def _deliver(self, tokens: list[int], output: RequestOutput | None) -> None:
        for tok in tokens:
            self._queue.put_nowait(tok)
        if output is not None and not self._done.done():
            self._done.set_result(output)
            self._queue.put_nowait(_END)


class RequestFrontend:
    """The request API's caller side: streams, superseding keys and the admission check. The
    engine core runs elsewhere (a worker thread here, worker processes in parallel_engine.py);
    subclasses say how a command reaches it (`_send`) and hand back what it produced
    (`_deliver`, from any thread)."""

    def __init__(self) -> None:
        self._streams: dict[str, tuple[RequestStream, asyncio.AbstractEventLoop]] = {}
        self._lock = threading.Lock()  # guards _streams, _keys, _stats
        self._keys: dict[str, str] = {}  # supersede key -> live request id
        self._ids = itertools.count()
        self._stats: dict[str, int] = {}

    def _check(self, prompt_ids: list[int], params: SamplingParams) -> None:
        """Raise AdmissionError for a request that can never be served."""
        raise NotImplementedError

    def _send(self, command: tuple[str, Any]) -> None:
        """Pass ("add", args) / ("cancel", request_id) to the engine core."""
        raise NotImplementedError

    # -- requests (any thread with a running loop) ---------------------------------------
    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams | None = None,
        *,
        priority: Priority = Priority.INLINE,
        request_id: str | None = None,
        supersede: str | None = None,
        speculate: bool = True,
    ) -> RequestStream:
        params = params or SamplingParams()
        prompt_ids = list(prompt_ids)
        self._check(prompt_ids, params)  # AdmissionError now, in the caller's thread
        request_id = request_id or f"req-{next(self._ids)}"
        loop = asyncio.get_running_loop()
        stream = RequestStream(request_id, self, loop)
        with self._lock:
            if request_id in self._streams:
                raise ValueError(f"request id {request_id!r} is already live")
            self._streams[request_id] = (stream, loop)
            previous = self._keys.get(supersede) if supersede else None
            if supersede:
                self._keys[supersede] = request_id
        if previous is not None:
            self.cancel(previous)
        self._send(("add", (request_id, prompt_ids, params, priority, speculate)))
        return stream

    def cancel(self, request_id: str) -> None:
        """Cancel a request (thread-safe; unknown or finished ids are ignored)."""
        self._send(("cancel", request_id))

    def stats(self) -> dict[str, int]:
        """Block usage and queue lengths as of the last step (thread-safe snapshot)."""
        with self._lock:
            return dict(self._stats)

    # -- results (the engine side, any thread) -------------------------------------------
    def _deliver(self, request_id: str, tokens: list[int], output: RequestOutput | None) -> None:
        """New tokens of a request and, when it finished, its output."""
        with self._lock:
            entry = self._streams.get(request_id)
            if entry is not None and output is not None:
                del self._streams[request_id]
                for key, rid in list(self._keys.items()):
                    if rid == request_id:
                        del self._keys[key]
        if entry is None:
            return
        stream, loop = entry
        try:
            loop.call_soon_threadsafe(stream._deliver, tokens, output)
        except RuntimeError:  # the caller's loop is closed: nobody is listening
            pass

    def _live_requests(self) -> list[str]:
        with self._lock:
            return list(self._streams)
