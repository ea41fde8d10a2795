"""The loopls language server: state on the server subclass, thin feature handlers."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from loopls.engine.generate import GenerationError
from loopls.engine.loader import CheckpointError

from .completion import UNTRAINED_NOTICE, Completer
from .completion_cache import CompletionCache
from .convert import PositionError, offset_at
from .engine_host import load_completer
from .options import Options, options_to_json, parse_options
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
        self.options = Options()
        self.model_override = model_override
        self.stats = Stats()
        # One engine thread: generation never blocks the event loop that reads messages.
        self.engine_thread = ThreadPoolExecutor(1, thread_name_prefix="loopls-engine")
        self._completer: asyncio.Future[Completer] | None = None
        self._pending: dict[str, threading.Event] = {}
        self.completion_cache = CompletionCache()

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
            loop = asyncio.get_running_loop()
            self._completer = asyncio.ensure_future(
                loop.run_in_executor(self.engine_thread, load_completer, self.model_name, self.options.model.device)
            )
            self._completer.add_done_callback(self._announce_model)
        return self._completer

    def _announce_model(self, fut: asyncio.Future[Completer]) -> None:
        if fut.cancelled():
            return
        if fut.exception() is not None:
            message = f"loopls: cannot load model: {fut.exception()}"
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=message))
            return
        lm = fut.result().lm
        self.window_log_message(types.LogMessageParams(
            type=types.MessageType.Info,
            message=f"loopls: loaded {lm.config.model_type} model from {lm.path} on {lm.device}",
        ))
        if lm.untrained:
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
        previous = self._pending.pop(uri, None)
        if previous is not None:
            previous.set()
        cached = self.completion_cache.lookup(uri, text, offset)
        if cached is not None:
            self.stats.cache_hits += 1
            return cached
        cancel = self._pending[uri] = threading.Event()
        try:
            completer = await self._loaded_completer()
            loop = asyncio.get_running_loop()
            items = await loop.run_in_executor(
                self.engine_thread, self._generate, completer, text, offset, cancel
            )
        except asyncio.CancelledError:
            cancel.set()  # the engine thread sees it before its next forward pass
            self.stats.cancelled += 1
            raise
        finally:
            if self._pending.get(uri) is cancel:
                del self._pending[uri]
        if not cancel.is_set():
            self.completion_cache.store(uri, text, offset, items)
        return items

    async def _loaded_completer(self) -> Completer:
        try:
            return await self.completer()
        except (CheckpointError, OSError, ValueError) as exc:
            raise JsonRpcInternalError(f"model not available: {exc}") from None

    def _generate(self, completer: Completer, text: str, offset: int, cancel: threading.Event) -> list[str]:
        if cancel.is_set():
            return []
        self.stats.active_generations += 1
        try:
            result = completer.complete(text, offset, self.options.completion, cancel)
        except (GenerationError, ValueError) as exc:
            raise JsonRpcInvalidParams(str(exc)) from None
        except RuntimeError as exc:  # includes torch.OutOfMemoryError; the server stays up
            log.exception("engine failure")
            _free_device_memory()
            raise JsonRpcInternalError(f"engine failed: {exc}") from None
        finally:
            self.stats.active_generations -= 1
        gen = result.generation
        self.stats.generated_tokens += len(gen.token_ids)
        self.stats.last_generated_tokens = len(gen.token_ids)
        if gen.finish_reason == "cancelled":
            return []
        self.stats.completed += 1
        return result.items

    def status(self) -> dict[str, Any]:
        model: dict[str, Any] = {"name": self.model_name, "loaded": False}
        fut = self._completer
        if fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None:
            lm = fut.result().lm
            model.update(loaded=True, path=str(lm.path), modelType=lm.config.model_type,
                         untrained=lm.untrained, device=str(lm.device))
        return {"version": __version__, "model": model, "options": options_to_json(self.options),
                "stats": asdict(self.stats)}


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
