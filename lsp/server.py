"""The loopls language server: its state in one place, and its lifecycle.

State: the options, the context host (project models, `context_features.py`), the smell host
(`diagnostics.py`), the model host (`model_host.py`), the completion service
(`completion/service.py`), the status reporter and the acceptance counters. Handlers (features.py and the feature modules) stay
thin: they read the document, call one of these, convert the result.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePath
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from loopls.context.languages import language_for_path
from loopls.engine.backends import BackendError
from loopls.engine.serving.standby import StandbyProcess

from .code_actions import RefactorHost
from .collector import Collector
from .completion.acceptance import AcceptanceCounter
from .completion.service import CompletionRequest, Completions, CompletionService
from .context_features import ContextHost
from .diagnostics import SmellHost
from .model_host import EngineFailed, ModelHost
from .options import Options, backend_config, merge_options, options_to_json
from .positions import UTF16, LineIndex, LspTextDocument, LspWorkspace, PositionError, strict_converter
from .protocol import LooplsProtocol
from .status import STATUS, StatusReporter
from .version import __version__

log = logging.getLogger(__name__)
# LSP language ids of documents without a path (untitled:) -> loopls' grammar names
_LANGUAGE_IDS = {"python": "python", "javascript": "javascript", "javascriptreact": "javascript",
                 "typescript": "typescript", "typescriptreact": "tsx", "java": "java", "go": "go", "rust": "rust",
                 "c": "c", "cpp": "cpp"}


class LooplsServer(LanguageServer):
    def __init__(self, model_override: str | None = None, standby: StandbyProcess | None = None) -> None:
        super().__init__(
            "loopls",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=LooplsProtocol,
            converter_factory=strict_converter,
        )
        # The server's whole state, declared here. Four threads do the long work, so the event
        # loop that reads messages (and cancellations) never waits on it: the project thread
        # (context host: project models, prompt context, smell checks), the refactor thread
        # (code actions: refactors and their verification), the prepare thread (model loading,
        # prompt building) and the serving engine's own worker.
        self.options = Options()
        self.model_override = model_override
        self.collector = Collector()  # keeps what lives long out of full GC passes (collector.py)
        self.collector.watch()
        self.status = StatusReporter(self.status_json, lambda status: self.protocol.notify(STATUS, status))
        self.context = ContextHost(self, self.collector)  # one project model per workspace folder, on its thread
        self.context.changed = self.status.changed
        self.smells = SmellHost(self, self.context)  # code-smell diagnostics, read from those models
        self.refactors = RefactorHost(self, self.context, self.smells)  # code actions
        self.prepare_thread = ThreadPoolExecutor(1, thread_name_prefix="loopls-prepare")
        self.models = ModelHost(self.prepare_thread, report=self._report, changed=self._model_changed,
                                progress=self._progress, standby=standby)  # the model, through the engine backend only
        self.acceptance = AcceptanceCounter()
        self.completions = CompletionService(self.models, self.prepare_thread, lambda: self.options.completion,
                                             context=self.context.provide, label=_label, quiet=self.context.hold)
        self.last_latency_ms: float | None = None
        self._frozen_backend: object | None = None  # the loaded backend kept out of full collections

    def document_event(self, method: str, params: Any) -> None:
        """The one fan-out of document and workspace events (after pygls has updated its own
        copy of the documents): the project models first, then the diagnostics."""
        for consumer in (self.context, self.smells):
            try:
                consumer.document_event(method, params)
            except Exception:  # noqa: BLE001 - a consumer failing must never break document sync
                log.exception("%s: %s failed", type(consumer).__name__, method)
        if method == types.TEXT_DOCUMENT_DID_CLOSE:
            self.completions.forget(params.text_document.uri)

    # -- lifecycle --------------------------------------------------------------------------

    def adopt_workspace(self) -> None:
        """At `initialize`: documents keep LSP's line breaks and the negotiated encoding
        (pygls' own documents split lines like `str.splitlines`)."""
        self.protocol._workspace = LspWorkspace.like(self.workspace, types.TextDocumentSyncKind.Incremental)

    def start_model(self) -> None:
        self.status.enabled = True
        self.configure_model()

    def configure_model(self) -> None:
        """Load the model the options name (a change reloads it; a new budget does not)."""
        try:
            config = backend_config(self.options, self.model_override)
        except BackendError as exc:
            self.models.unavailable(self.model_override or self.options.model.name, str(exc))
            return
        self.models.configure(config)

    def _model_changed(self) -> None:
        self.status.changed()
        backend = self.models.backend
        if self.models.state == "ready" and backend is not None:
            if backend is not self._frozen_backend:  # a load, not a generation starting or ending
                self._frozen_backend = backend
                self.collector.freeze_long_lived()  # torch's modules and the model
            self.context.warm(backend.tokenizer)  # the first prompt or explainContext need not make it

    def end_process(self) -> None:
        """Before the process exits (after `exit` or the client gone, with or without
        `shutdown`): stop the model and a load in progress, so that no engine process
        outlives the server (its threads end with it)."""
        self.models.shutdown()

    def shutdown_engine(self) -> None:
        self.smells.shutdown()
        self.models.shutdown()
        self.context.shutdown()
        self.refactors.shutdown()
        self.collector.unwatch()

    # -- options ----------------------------------------------------------------------------

    def apply_options(self, raw: Any) -> None:
        """Merge a (partial) `loopls` section into the options; invalid keys fall back to their
        defaults with one warning."""
        options, warning = merge_options(raw, self.options)
        changed = options != self.options
        self.options = options
        if warning:
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=warning))
        if changed:
            self.completions.cache.clear()  # suggestions made under other options are stale
            if self.status.enabled:
                self.configure_model()
            self.status.changed()

    def client_pulls_configuration(self) -> bool:
        caps = self.client_capabilities
        return bool(caps and caps.workspace and caps.workspace.configuration)

    async def pull_configuration(self) -> None:
        """Ask the client for the `loopls` section (`workspace/configuration`)."""
        if not self.client_pulls_configuration():
            return
        try:
            result = await self.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="loopls")]))
        except Exception as exc:  # noqa: BLE001 - a client failing this request must not stop the server
            log.warning("workspace/configuration failed: %s", exc)
            return
        if result and isinstance(result[0], dict):
            self.apply_options(result[0])

    # -- documents and completions --------------------------------------------------------------

    @property
    def encoding(self) -> str:
        return self.workspace.position_encoding or UTF16

    def document(self, uri: str) -> LspTextDocument:
        doc = self.workspace.text_documents.get(uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"document is not open: {uri}")
        return doc

    def completion_request(self, uri: str, position: types.Position, invoked: bool) -> tuple[CompletionRequest, LineIndex]:
        doc = self.document(uri)
        index = doc.line_index
        try:
            offset = index.offset(position, self.encoding)
        except PositionError as exc:
            raise JsonRpcInvalidParams(str(exc)) from None
        path = to_fs_path(uri) if uri.startswith("file:") else None
        language = language_for_path(path) if path else _LANGUAGE_IDS.get(doc.language_id or "")
        return CompletionRequest(uri, doc.version, path, language, index.text, offset, invoked), index

    async def complete(self, request: CompletionRequest) -> Completions | None:
        """The completion service's answer (None while the model cannot be loaded: the model
        host told the user once); a backend failing the request is an LSP error."""
        try:
            return await self.completions.complete(request)
        except EngineFailed as exc:
            raise JsonRpcInternalError(f"engine failed: {exc}") from None

    def note_latency(self, started: float) -> None:
        self.last_latency_ms = round((time.perf_counter() - started) * 1000, 1)
        self.status.changed()

    # -- reporting --------------------------------------------------------------------------

    def _report(self, level: str, message: str) -> None:
        if level == "info":
            self.window_log_message(types.LogMessageParams(type=types.MessageType.Info, message=message))
            return
        kind = types.MessageType.Error if level == "error" else types.MessageType.Warning
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    @contextlib.asynccontextmanager
    async def _progress(self, detail: str):
        """`$/progress` "loopls: loading model" around a load, when the client shows progress."""
        caps = self.client_capabilities
        token = None
        if caps and caps.window and caps.window.work_done_progress:
            token = f"loopls-model-{uuid.uuid4().hex[:8]}"
            try:
                await self.work_done_progress.create_async(token)
                self.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                    title="loopls: loading model", message=detail))
            except Exception as exc:  # noqa: BLE001 - a client refusing progress must not stop loading
                log.info("no progress reporting: %s", exc)
                token = None
        try:
            yield
        finally:
            if token is not None:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(
                    message="loaded" if self.models.error is None else "failed"))

    def status_json(self) -> dict[str, Any]:
        """`loopls/status` (docs/architecture.md): what a status bar shows, plus options and stats."""
        models = self.models
        if not self.options.completion.enabled:
            state, message = "disabled", "completions are off (completion.enabled is false)"
        elif models.state == "error":
            fix = ("Set model.name to a checkpoint folder, a cached hub id, or 'tiny'."
                   if self.options.model.backend == "native" else "Check the model.* options (docs/deploy.md).")
            state, message = "error", f"cannot load model {models.name!r}: {models.error}. {fix}"
        elif models.state in ("idle", "loading"):
            state, message = "loading", f"loading model {models.name}".strip()
        elif models.stats.active_generations:
            state, message = "busy", "generating"
        else:
            state, message = "ready", "ready"
        status: dict[str, Any] = {
            "state": state,
            "message": message,
            "model": models.model_json(),
            "index": self.context.index_status(),
            "acceptance": self.acceptance.as_json(),
            "version": __version__,
            "options": options_to_json(self.options),
            "stats": {**models.stats_json(), **vars(self.completions.stats), "waste": self.completions.waste.as_json(),
                      "tracked": self.tracked(), "gc": self.collector.as_json()},
            "engine": models.backend.stats() if models.backend is not None else {},
        }
        if self.last_latency_ms is not None:
            status["lastLatencyMs"] = self.last_latency_ms
        return status

    def tracked(self) -> dict[str, int]:
        """Sizes of what the server keeps per document and per request: none may grow with
        the number of requests (the soak test reads them)."""
        return {"documents": len(self.workspace.text_documents) if self.protocol._workspace is not None else 0,
                **self.protocol.in_flight(), **self.completions.tracked(), **self.smells.tracked(),
                **self.context.tracked()}


def _label(path: str | None) -> str | None:
    """How a buffer-only prompt names its file: the file name, never the whole path."""
    return PurePath(path).name if path else None
