"""The context engine inside the server: background indexing with `$/progress`, incremental
updates from the editor and the disk, `loopls/explainContext`, and packed cross-file context
for completions.

Index work runs on one thread of its own, in arrival order, so that edits apply to the tree
in the order the editor made them; a lock guards the index against the engine thread, which
assembles prompts for completions. Document events are observed by wrapping pygls' built-in
text-synchronisation handlers rather than registering user features, so that other features
(diagnostics) keep the one user-handler slot each notification has.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams
from pygls.uris import to_fs_path

from loopls.context.assemble import ContextEngine
from loopls.context.documents import ParsedDocument
from loopls.context.explain import explain
from loopls.context.index import IndexSummary, WorkspaceIndex
from loopls.context.packing import PackedContext
from loopls.context.workspace import WorkspaceError

from .positions import LineIndex, PositionError, check_position, scrub_surrogates
from .server import LooplsServer

log = logging.getLogger(__name__)
EXPLAIN_CONTEXT = "loopls/explainContext"
CONTEXT_STATUS = "loopls/contextStatus"
CHANGES_REFRESH_S = 2.0  # how stale the uncommitted-diff signal may get between saves


def _cache_dir() -> Path:
    from loopls.engine.model.models import cache_dir

    return cache_dir()


class ContextHost:
    """The server's context state: index, open documents, engine (made per tokenizer)."""

    def __init__(self, server: LooplsServer) -> None:
        self.server = server
        self.lock = threading.Lock()
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="loopls-context")
        self.index: WorkspaceIndex | None = None
        self.engine: ContextEngine | None = None
        self.docs: dict[str, ParsedDocument] = {}
        self.ready: asyncio.Future | None = None
        self.summary: IndexSummary | None = None
        self._changes_read = 0.0
        self.progress = (0, 0)  # files indexed, files to index
        self.provided = 0  # completion prompts packed with workspace context
        self.last_prompt_tokens = 0

    # -- indexing -------------------------------------------------------------------------

    def start(self) -> asyncio.Future:
        if self.ready is None:
            self.ready = asyncio.ensure_future(self._build())
        return self.ready

    async def _build(self) -> None:
        root = self.server.workspace.root_path
        if not root:
            return
        loop = asyncio.get_running_loop()
        token = await self._begin_progress()

        def progress(done: int, total: int, path: str) -> None:
            self.progress = (done, total)
            if done % 50 == 0 or done == total:
                loop.call_soon_threadsafe(self.server.status.changed)
            if token is not None and (done % 50 == 0 or done == total):
                report = types.WorkDoneProgressReport(message=f"{done}/{total} {path}", percentage=100 * done // max(total, 1))
                loop.call_soon_threadsafe(self.server.work_done_progress.report, token, report)

        def build() -> IndexSummary | None:
            try:
                index = WorkspaceIndex(root, _cache_dir())
            except WorkspaceError as exc:
                log.warning("no context index: %s", exc)
                return None
            summary = index.build(progress)
            with self.lock:
                self.index = index
                for path, doc in self.docs.items():  # documents opened while indexing
                    index.update_document(path, doc.text, doc.symbols())
            return summary

        self.summary = await loop.run_in_executor(self.thread, build)
        self.server.status.changed()
        if token is not None:
            message = f"{self.summary.files} files indexed" if self.summary else "no index"
            self.server.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))

    async def _begin_progress(self) -> str | None:
        caps = self.server.client_capabilities
        if not (caps and caps.window and caps.window.work_done_progress):
            return None
        token = f"loopls-index-{uuid.uuid4().hex[:8]}"
        try:
            await self.server.work_done_progress.create_async(token)
        except Exception as exc:  # noqa: BLE001 - a client refusing progress must not stop indexing
            log.info("no progress reporting: %s", exc)
            return None
        self.server.work_done_progress.begin(token, types.WorkDoneProgressBegin(title="loopls: indexing", percentage=0))
        return token

    # -- document events (run on the context thread, in order) ----------------------------

    def path_of(self, uri: str) -> str | None:
        if self.index is None and self.server.workspace.root_path is None:
            return None
        root = Path(self.index.root if self.index else self.server.workspace.root_path).resolve()
        fs_path = to_fs_path(uri)
        if fs_path is None:
            return None
        try:
            return Path(fs_path).resolve().relative_to(root).as_posix()
        except ValueError:
            return None  # outside the workspace: never indexed

    def did_open(self, params: types.DidOpenTextDocumentParams) -> None:
        self.start()
        path = self.path_of(params.text_document.uri)
        if path is not None:
            self.thread.submit(self._open, path, params.text_document.text)

    def _open(self, path: str, text: str) -> None:
        with self.lock:
            doc = self.docs[path] = ParsedDocument(path, text, self.index.languages if self.index else _languages())
            if self.index is not None:
                self.index.update_document(path, text, doc.symbols())

    def did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        path = self.path_of(params.text_document.uri)
        if path is not None:
            self.thread.submit(self._change, path, list(params.content_changes), self.server.encoding)

    def _change(self, path: str, changes: list[Any], encoding: str) -> None:
        with self.lock:
            doc = self.docs.get(path)
            if doc is None:
                return
            try:
                for change in changes:
                    if isinstance(change, types.TextDocumentContentChangePartial):
                        start, end = LineIndex(doc.text).span(change.range, encoding)
                        doc.edit(start, end, scrub_surrogates(change.text))
                    else:
                        doc.replace(change.text)
            except (PositionError, ValueError) as exc:  # a client out of sync: start over from its text
                log.warning("%s: edit out of range (%s); re-reading the buffer", path, exc)
                doc.replace(self._buffer_text(path) or doc.text)
            if self.index is not None:
                self.index.update_document(path, doc.text, doc.symbols())
            if self.engine is not None:
                self.engine.touch(path)

    def _buffer_text(self, path: str) -> str | None:
        uri = (Path(self.index.root) / path).as_uri() if self.index else None
        doc = self.server.workspace.text_documents.get(uri) if uri else None
        return doc.source if doc is not None else None

    def did_close(self, params: types.DidCloseTextDocumentParams) -> None:
        path = self.path_of(params.text_document.uri)
        if path is not None:
            self.thread.submit(self._close, path)

    def _close(self, path: str) -> None:
        with self.lock:
            self.docs.pop(path, None)
            if self.index is not None:
                self.index.close_document(path)

    def files_changed(self, params: types.DidChangeWatchedFilesParams) -> None:
        paths = [p for p in (self.path_of(c.uri) for c in params.changes) if p is not None]
        if paths:
            self.thread.submit(self._refresh, paths)

    def _refresh(self, paths: list[str]) -> None:
        with self.lock:
            if self.index is not None:
                self.index.refresh(paths)
            self._changes_read = 0.0  # re-read the diff at the next assembly

    # -- assembly -------------------------------------------------------------------------

    def _engine_for(self, tokenizer) -> ContextEngine | None:
        """The engine for this tokenizer (caller holds the lock)."""
        if self.index is None:
            return None
        if self.engine is None or self.engine.packer.counter is not tokenizer:
            self.engine = ContextEngine(self.index, tokenizer, tokenizer.special)
            self._changes_read = time.monotonic()
        elif time.monotonic() - self._changes_read > CHANGES_REFRESH_S:
            self.engine.refresh_changes()
            self._changes_read = time.monotonic()
        return self.engine

    def provide(self, tokenizer, uri: str, version: int | None, text: str, offset: int,
                budget: int) -> PackedContext | None:
        """The packed prompt for a completion at `offset` of document `uri` whose text at
        `version` is `text`, or None when the document is outside the indexed workspace (or
        the index is not ready): the caller then uses the buffer alone."""
        path = self.path_of(uri)
        if path is None:
            return None
        with self.lock:
            engine = self._engine_for(tokenizer)
            if engine is None:
                return None
            try:
                packed = engine.assemble(path, text, offset, budget)
            except (ValueError, OSError) as exc:  # e.g. a budget too small for labels: buffer only
                log.warning("context assembly failed: %s", exc)
                return None
        self.provided += 1
        self.last_prompt_tokens = packed.prompt_tokens
        return packed

    def index_status(self) -> dict:
        """For `loopls/status`: none | indexing | ready, with progress."""
        if self.index is not None and self.ready is not None and self.ready.done():
            return {"state": "ready", "files": len(self.index.files)}
        if self.ready is not None and not self.ready.done():
            done, total = self.progress
            return {"state": "indexing", "done": done, "total": total}
        return {"state": "none"}

    def status(self) -> dict:
        """For `loopls/contextStatus`: whether the index is ready and what it holds."""
        summary = self.summary
        return {
            "root": str(self.index.root) if self.index else self.server.workspace.root_path,
            "indexed": self.index is not None,
            "files": len(self.index.files) if self.index else 0,
            "definitions": summary.definitions if summary else 0,
            "persistent": bool(summary and summary.persistent),
            "openDocuments": sorted(self.docs),
            "completionPrompts": self.provided,
            "lastPromptTokens": self.last_prompt_tokens,
        }

    async def explain(self, uri: str, position: types.Position, budget: int) -> dict:
        doc = self.server.document(uri)
        text = doc.source
        try:
            offset = doc.line_index.offset(position, self.server.encoding)
        except PositionError as exc:
            raise JsonRpcInvalidParams(str(exc)) from None
        path = self.path_of(uri)
        if path is None:
            raise JsonRpcInvalidParams(f"{uri} is outside the workspace")
        await self.start()
        backend = await self.server.models.ready()
        if backend is None:
            raise JsonRpcInternalError(f"model not available: {self.server.models.error}")
        tokenizer = backend.tokenizer

        def run() -> dict:
            with self.lock:
                engine = self._engine_for(tokenizer)
                if engine is None:
                    raise JsonRpcInternalError("the workspace could not be indexed")
                return explain(engine.assemble(path, text, offset, budget))

        return await asyncio.get_running_loop().run_in_executor(self.thread, run)


def _languages():
    from loopls.context.languages import Languages

    return Languages()


def _observe(server: LooplsServer, method: str, listener) -> None:
    """Run `listener(params)` before pygls' built-in handler for a text-sync notification."""
    fm = server.protocol.fm
    builtin = fm.builtin_features[method]

    def observed(params):
        try:
            listener(params)
        except Exception:  # noqa: BLE001 - the context engine must never break document sync
            log.exception("context engine: %s failed", method)
        return (yield from builtin(params))

    fm.builtin_features[method] = observed


def _parse_explain(params: Any) -> tuple[str, types.Position, int | None]:
    try:
        get = params.get if isinstance(params, dict) else lambda k: getattr(params, k, None)
        doc, pos, budget = get("textDocument"), get("position"), get("budget")
        uri = doc["uri"] if isinstance(doc, dict) else doc.uri
        line, char = (pos["line"], pos["character"]) if isinstance(pos, dict) else (pos.line, pos.character)
        position = types.Position(line=line, character=char)
        check_position(position)
    except PositionError as exc:
        raise JsonRpcInvalidParams(f"loopls/explainContext: {exc}") from None
    except (AttributeError, KeyError, TypeError, ValueError):
        raise JsonRpcInvalidParams("loopls/explainContext expects {textDocument: {uri}, position, budget?}") from None
    if budget is not None and (type(budget) is not int or not 64 <= budget <= 131072):
        raise JsonRpcInvalidParams("budget must be an integer between 64 and 131072")
    return uri, position, budget


def register_context_features(server: LooplsServer) -> None:
    host = server.context = ContextHost(server)
    _observe(server, types.INITIALIZED, lambda params: host.start())
    _observe(server, types.TEXT_DOCUMENT_DID_OPEN, host.did_open)
    _observe(server, types.TEXT_DOCUMENT_DID_CHANGE, host.did_change)
    _observe(server, types.TEXT_DOCUMENT_DID_CLOSE, host.did_close)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def files_changed(ls: LooplsServer, params: types.DidChangeWatchedFilesParams) -> None:
        host.files_changed(params)

    @server.feature(CONTEXT_STATUS)
    def context_status(ls: LooplsServer, params: Any) -> dict:
        return host.status()

    @server.feature(EXPLAIN_CONTEXT)
    async def explain_context(ls: LooplsServer, params: Any) -> dict:
        uri, position, budget = _parse_explain(params)
        return await host.explain(uri, position, budget or ls.options.completion.context_tokens)
