"""The loopls language server: state on the server subclass, thin feature handlers."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from loopls.engine.backends import Backend, BackendError, load_backend
from loopls.engine.backends.base import Priority, RequestOutput, SamplingParams, Stream
from loopls.engine.model.generate import cut_at_stop

from .completion import UNTRAINED_NOTICE, Completer
from .completion_cache import CompletionCache
from .context_features import ContextHost
from .convert import PositionError, offset_at
from .diagnostics import SmellHost
from .options import Options, backend_config, options_to_json, parse_options
from .protocol import LooplsProtocol
from .version import __version__

log = logging.getLogger(__name__)


@dataclass
class Stats:
    active_generations: int = 0
    completed: int = 0
    cancelled: int = 0
    generated_tokens: int = 0
    last_generated_tokens: int = 0
    cache_hits: int = 0


class LooplsServer(LanguageServer):
    def __init__(self, model_override: str | None = None) -> None:
        super().__init__(
            "loopls",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=LooplsProtocol,
        )
        # The server's whole state, declared here. Three threads do the long work, so the event
        # loop that reads messages (and cancellations) never waits on it: the project thread
        # (context host: project models, prompt context, smell checks), the prepare thread
        # (model loading, prompt building) and the serving engine's own worker.
        self.options = Options()
        self.model_override = model_override
        self.stats = Stats()
        self.context = ContextHost(self)  # one project model per workspace folder, on its thread
        self.smells = SmellHost(self, self.context)  # code-smell diagnostics, read from those models
        self.engine_thread = ThreadPoolExecutor(1, thread_name_prefix="loopls-prepare")
        self._completer: asyncio.Future[Completer] | None = None  # the loaded model, through...
        self._backend: Backend | None = None  # ...the engine backend, the only way to the engine
        self._engine_down = False  # the last request failed; the user has been told
        self.completion_cache = CompletionCache()
        self._load_error_shown: str | None = None  # the model-load error last shown to the user

    def document_event(self, method: str, params: Any) -> None:
        """The one fan-out of document and workspace events (after pygls has updated its own
        copy of the documents): the project models first, then the diagnostics."""
        for consumer in (self.context, self.smells):
            try:
                consumer.document_event(method, params)
            except Exception:  # noqa: BLE001 - a consumer failing must never break document sync
                log.exception("%s: %s failed", type(consumer).__name__, method)

    @property
    def model_name(self) -> str:
        return self.model_override or self.options.model.name

    def apply_options(self, raw: Any) -> None:
        options, warning = parse_options(raw, self.options)
        reload = options.model != self.options.model
        self.options = options
        if warning:
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=warning))
        if reload:
            self._completer = None
        self.completion_cache = CompletionCache()  # items made under other options are stale

    def completer(self) -> asyncio.Future[Completer]:
        """The loaded model, loading it on first use; a failed load is retried next time."""
        if self._completer is None or (self._completer.done() and self._completer.exception()):
            self._completer = asyncio.ensure_future(self._load())
            self._completer.add_done_callback(self._announce_model)
        return self._completer

    async def _load(self) -> Completer:
        loop = asyncio.get_running_loop()
        config = backend_config(self.options, self.model_override)
        backend = await loop.run_in_executor(self.engine_thread, load_backend, config)
        self.shutdown_engine()  # the previous model's engine, after a model change
        self._backend = backend
        return Completer(backend)

    def shutdown_engine(self) -> None:
        if self._backend is not None:
            self._backend.shutdown()
            self._backend = None

    def _announce_model(self, fut: asyncio.Future[Completer]) -> None:
        if fut.cancelled():
            return
        if fut.exception() is not None:
            message = f"loopls: cannot load model: {fut.exception()}"
            if message != self._load_error_shown:  # each request retries the load: show a failure once
                self._load_error_shown = message
                self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=message))
            return
        self._load_error_shown = None
        info = fut.result().backend.info
        self.window_log_message(types.LogMessageParams(
            type=types.MessageType.Info,
            message=f"loopls: loaded {info.model_type} model from {info.path} on {info.device} ({info.backend})",
        ))
        if info.untrained:
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=UNTRAINED_NOTICE))

    def document_text(self, uri: str) -> str:
        doc = self.workspace.text_documents.get(uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"document is not open: {uri}")
        return doc.source

    async def complete_at(self, uri: str, position: types.Position) -> list[str]:
        """Completion texts at `position`; supersedes the document's previous request."""
        text = self.document_text(uri)
        try:
            offset = offset_at(text, position)
        except PositionError as exc:
            raise JsonRpcInvalidParams(str(exc)) from None
        if not self.options.completion.enabled:
            return []
        cached = self.completion_cache.lookup(uri, text, offset)
        if cached is not None:
            self.stats.cache_hits += 1
            return cached
        completer = await self._loaded_completer()
        options = self.options.completion
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(self.engine_thread, completer.prepare, text, offset, options)
        except ValueError as exc:
            raise JsonRpcInvalidParams(str(exc)) from None
        # supersede: this document's previous inline request is cancelled by the engine
        out = await self._run(prepared.ids, prepared.params, Priority.INLINE, supersede=f"inline:{uri}")
        if out.finish_reason == "cancelled":
            return []
        items = completer.finish(out.token_ids, prepared.params, text, offset, options)
        self.completion_cache.store(uri, text, offset, items)
        return items

    async def generate_text(self, prompt_ids: list[int], params: SamplingParams, priority: Priority) -> str:
        """Run one request through the serving engine; the decoded text, cut at a stop string."""
        completer = await self._loaded_completer()
        out = await self._run(prompt_ids, params, priority)
        return cut_at_stop(completer.backend.tokenizer.decode(out.token_ids), params.stop)[0]

    async def _run(
        self, prompt_ids: list[int], params: SamplingParams, priority: Priority, supersede: str | None = None
    ) -> RequestOutput:
        """Submit to the serving engine and wait for the end; cancelling the caller cancels
        the engine request (its blocks are freed before the next step)."""
        try:
            stream = self._backend.submit(prompt_ids, params, priority=priority, supersede=supersede)
        except ValueError as exc:  # includes the engine's AdmissionError
            raise JsonRpcInvalidParams(str(exc)) from None
        try:
            # shielded: the accounting must see the request end even when the caller is cancelled
            out = await asyncio.shield(asyncio.ensure_future(self._account(stream)))
        except asyncio.CancelledError:
            stream.cancel()
            self.stats.cancelled += 1
            raise
        if out.finish_reason == "error":
            self._engine_failed(out.error or "unknown error")
            raise JsonRpcInternalError(f"engine failed: {out.error}")
        if out.finish_reason != "cancelled":
            self._engine_answered()
        return out

    def _engine_failed(self, error: str) -> None:
        """Show the first failure of a run of failures (a dead model server fails every
        keystroke's request: the user is told once, not per keystroke)."""
        if not self._engine_down:
            self._engine_down = True
            self.window_show_message(types.ShowMessageParams(
                type=types.MessageType.Error,
                message=f"loopls: completions are failing: {error}. They resume when the model answers again.",
            ))

    def _engine_answered(self) -> None:
        if self._engine_down:
            self._engine_down = False
            self.window_log_message(types.LogMessageParams(
                type=types.MessageType.Info, message="loopls: the model answers again; completions resumed"))

    async def _loaded_completer(self) -> Completer:
        try:
            return await self.completer()
        except (BackendError, OSError, ValueError, RuntimeError) as exc:
            # the model's problem, not the request's nor a bug: RequestFailed with the reason
            raise JsonRpcException(f"cannot load model: {exc}", types.LSPErrorCodes.RequestFailed.value) from None

    async def _account(self, stream: Stream) -> RequestOutput:
        """Wait for a request to end, however it ends, and count what it generated."""
        self.stats.active_generations += 1
        try:
            out = await stream.result()
        finally:
            self.stats.active_generations -= 1
        self.stats.generated_tokens += len(out.token_ids)
        self.stats.last_generated_tokens = len(out.token_ids)
        if out.finish_reason in ("stop", "length"):
            self.stats.completed += 1
        elif out.finish_reason == "error":
            log.error("engine failed on %s: %s", stream.request_id, out.error)
        return out

    def status(self) -> dict[str, Any]:
        model: dict[str, Any] = {"name": self.model_name, "loaded": False}
        fut = self._completer
        if fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None:
            info = fut.result().backend.info
            model.update(loaded=True, path=info.path, modelType=info.model_type,
                         untrained=info.untrained, device=info.device, backend=info.backend)
        engine = self._backend.stats() if self._backend is not None else {}
        return {"version": __version__, "model": model, "options": options_to_json(self.options),
                "stats": asdict(self.stats), "engine": engine}


