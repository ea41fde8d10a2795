"""The project models inside the server: one `Project` per workspace folder, built in the
background with `$/progress`, kept current from the editor and the disk, and read by the
completion prompts (`provide`), `loopls/explainContext` and the smell diagnostics.

Everything that touches a project runs on one thread of its own, in arrival order, so edits
apply to the trees in the order the editor made them and no reader ever sees a half-applied
change; nothing of it runs on the event loop. Documents outside every workspace folder and
`untitled:` documents belong to no project: they get buffer-only completions and no
cross-file work.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from loopls.context.assemble import ContextEngine
from loopls.context.explain import explain
from loopls.context.packing import PackedContext
from loopls.context.project import IndexSummary, Project
from loopls.context.workspace import WorkspaceError

from .collector import Collector
from .explanations import Explanations
from .positions import LspTextDocument, PositionError, scrub_surrogates
from .project_thread import ProjectThread
from .settling import Settler

log = logging.getLogger(__name__)
CHANGES_REFRESH_S = 2.0  # how stale the uncommitted-diff signal may get between saves
T = TypeVar("T")


def _cache_dir() -> Path:
    from loopls.engine.model.models import cache_dir

    return cache_dir()


class ContextHost:
    """The server's project models (one per workspace folder), their thread and the context
    engines made from them (per tokenizer)."""

    def __init__(self, server: LanguageServer, collector: Collector | None = None) -> None:
        self.server = server
        self.collector = collector or Collector()
        self.thread = ProjectThread("loopls-project")
        self.projects: dict[Path, Project] = {}  # built, by root
        self.builds: dict[Path, asyncio.Future] = {}
        self.summaries: dict[Path, IndexSummary | None] = {}
        self.engines: dict[Path, ContextEngine] = {}
        self.long_work = 0  # builds and whole-project checks running on the thread
        self.on_built: list[Callable[[Project], None]] = []  # called on the thread after a build
        self.tree_consumers: list[Callable[[Project], Any]] = []  # -> a TreeConsumer or None
        self._changes_read: dict[Path, float] = {}
        self.progress: dict[Path, tuple[int, int]] = {}  # files indexed and to index, per folder
        self.changed: Callable[[], None] = lambda: None  # what the index status shows changed
        self.settler = Settler(lambda root: self.thread.submit(self._settle, root))  # deferred symbols
        self._warmed: dict[Path, Any] = {}  # root -> the tokenizer its engine was made for ahead of use
        self.explanations = Explanations()  # the last explainContext answer of each document
        self.provided = 0  # completion prompts packed with workspace context
        self.last_prompt_tokens = 0

    # -- the thread -------------------------------------------------------------------------

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run `fn(*args)` on the project thread, after everything submitted before it."""
        return asyncio.wrap_future(self.thread.submit(fn, *args))

    def hold(self):
        """While the block runs, queued changes wait (`ProjectThread.hold`): a completion
        that may still be shown is being generated."""
        return self.thread.hold()

    def read(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run `fn(*args)` on the project thread as soon as its running task ends (a read
        that carries its own document text: `project_thread.py`)."""
        return asyncio.wrap_future(self.thread.submit_read(fn, *args))

    # -- folders ----------------------------------------------------------------------------

    def roots(self) -> list[Path]:
        """The workspace folders (the root folder when the client named no folders)."""
        ws = self.server.workspace
        uris = list(ws.folders) or ([ws.root_uri] if ws.root_uri else [])
        out = []
        for uri in uris:
            path = to_fs_path(uri) if uri.startswith("file:") else None
            if path:
                out.append(Path(path).resolve())
        return sorted(set(out))

    def start(self) -> asyncio.Future:
        """Build every folder not built yet (`build`); a future that is done when all are."""
        self.build()
        return asyncio.gather(*self.builds.values())

    def build(self) -> None:
        """Build every folder not built yet. The build is queued on the project thread right
        away, so document events that follow apply to the built project. (No future to
        await: one left unread would log the builds' cancellation at shutdown.)"""
        loop = asyncio.get_running_loop()
        for root in self.roots():
            if root not in self.builds:
                token: dict[str, str] = {}  # the progress token, once the client accepted one
                job = asyncio.wrap_future(self.thread.submit(self._build, root, token, loop))
                self.builds[root] = asyncio.ensure_future(self._report(root, job, token))

    @property
    def ready(self) -> bool:
        return bool(self.builds) and all(f.done() for f in self.builds.values())

    async def _report(self, root: Path, job: asyncio.Future, token: dict[str, str]) -> None:
        """`$/progress` around a build running on the project thread."""
        begun = await self._begin_progress()
        if begun is not None:
            token["value"] = begun
        try:
            summary = self.summaries[root] = await job
        except asyncio.CancelledError:
            if job.cancelled():  # the build was dropped at shutdown: nothing to report
                return
            raise
        self.changed()
        if begun is not None:
            message = f"{summary.files} files indexed" if summary else "no index"
            self.server.work_done_progress.end(begun, types.WorkDoneProgressEnd(message=message))

    def _build(self, root: Path, token: dict[str, str], loop: asyncio.AbstractEventLoop) -> IndexSummary | None:
        def progress(done: int, total: int, path: str) -> None:
            self.progress[root] = (done, total)
            if done % 50 == 0 or done == total:
                loop.call_soon_threadsafe(self.changed)
            if "value" in token and (done % 50 == 0 or done == total):
                report = types.WorkDoneProgressReport(message=f"{done}/{total} {path}", percentage=100 * done // max(total, 1))
                loop.call_soon_threadsafe(self.server.work_done_progress.report, token["value"], report)

        try:
            project = Project(root, _cache_dir())
        except WorkspaceError as exc:
            log.warning("no project model for %s: %s", root, exc)
            return None
        consumers = [c for c in (make(project) for make in self.tree_consumers) if c is not None]
        self.long_work += 1
        try:
            summary = project.build(progress, consumer=_fan_out(consumers))
            self.projects[root] = project
            for callback in self.on_built:
                callback(project)
            self.collector.freeze_long_lived()  # the project model, and what the callbacks made of it
        finally:
            self.long_work -= 1
        return summary

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

    def locate(self, uri: str) -> tuple[Path, str] | None:
        """(folder root, workspace-relative path) of a document, or None outside every folder
        (and for `untitled:` and other non-file documents)."""
        fs_path = to_fs_path(uri) if uri.startswith("file:") else None
        if not fs_path:
            return None
        path = Path(fs_path).resolve()
        for root in sorted(self.roots(), key=lambda r: len(r.parts), reverse=True):  # innermost first
            if path.is_relative_to(root):
                return root, path.relative_to(root).as_posix()
        return None

    # -- events (the server's fan-out calls these on the event loop) --------------------------

    def document_event(self, method: str, params: Any) -> None:
        if method == types.INITIALIZED:
            self.build()
        elif method == types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS:
            self._folders_changed(params)
        elif method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES:
            by_root: dict[Path, list[str]] = {}
            for change in params.changes:
                where = self.locate(change.uri)
                if where is not None:
                    by_root.setdefault(where[0], []).append(where[1])
            for root, paths in by_root.items():
                self.thread.submit(self._refresh, root, paths)
        elif method in (types.TEXT_DOCUMENT_DID_OPEN, types.TEXT_DOCUMENT_DID_CHANGE, types.TEXT_DOCUMENT_DID_CLOSE):
            self.build()
            if method == types.TEXT_DOCUMENT_DID_CLOSE:
                self.explanations.forget(params.text_document.uri)
            # The server's document has applied the event already: the project replays its
            # edits (offsets checked there) and keeps the same string, not a copy of its own.
            doc = self.server.workspace.text_documents.get(params.text_document.uri)
            edits = doc.take_edits() if isinstance(doc, LspTextDocument) else []
            where = self.locate(params.text_document.uri)
            if where is None:
                return
            if method == types.TEXT_DOCUMENT_DID_OPEN:
                text = doc.source if doc is not None else scrub_surrogates(params.text_document.text)
                self.thread.submit(self._open, *where, text)
            elif method == types.TEXT_DOCUMENT_DID_CHANGE and doc is not None:
                self.thread.submit(self._change, *where, edits, doc.source)
                self.settler.edited(where[0])
            elif method == types.TEXT_DOCUMENT_DID_CLOSE:
                self.thread.submit(self._close, *where)

    def _settle(self, root: Path) -> None:
        """The deferred symbols, then the retrieval signals that read them (so the next
        prompt or explainContext does not re-index the long document itself)."""
        project = self.projects.get(root)
        if project is None or not project.unsettled:
            return  # no long document was edited: nothing deferred
        project.settle()
        engine = self.engines.get(root)
        if engine is not None:
            engine.signals.sync()

    def _folders_changed(self, params: types.DidChangeWorkspaceFoldersParams) -> None:
        for folder in params.event.removed or []:
            fs_path = to_fs_path(folder.uri)
            root = Path(fs_path).resolve() if fs_path else None
            if root is not None and self.builds.pop(root, None) is not None:
                self.summaries.pop(root, None)
                self._warmed.pop(root, None)
                self.thread.submit(self._drop, root)
        self.build()

    def _drop(self, root: Path) -> None:
        project = self.projects.pop(root, None)
        self.engines.pop(root, None)
        if project is not None:
            project.close()

    def _open(self, root: Path, path: str, text: str) -> None:
        project = self.projects.get(root)
        if project is not None:
            project.update_document(path, text)

    def _change(self, root: Path, path: str, edits: list[tuple[int | None, int | None, str]], text: str) -> None:
        """Replay the server document's edits (code-point offsets; None: a whole new text),
        the last one sharing `text`, the document's string after them."""
        project = self.projects.get(root)
        doc = project.documents.get(path) if project is not None else None
        if doc is None:
            return
        try:
            for i, (start, end, new) in enumerate(edits):
                if start is None or end is None:
                    project.update_document(path, new)
                else:
                    project.edit_document(path, start, end, new, text if i == len(edits) - 1 else None)
        except ValueError as exc:  # cannot happen unless the two copies diverged: start over
            log.warning("%s: edit out of range (%s); re-reading the buffer", path, exc)
            project.update_document(path, text)
        engine = self.engines.get(root)
        if engine is not None:
            engine.touch(path)

    def _close(self, root: Path, path: str) -> None:
        project = self.projects.get(root)
        if project is not None:
            project.close_document(path)

    def _refresh(self, root: Path, paths: list[str]) -> None:
        project = self.projects.get(root)
        if project is not None:
            project.refresh(paths)
            self._changes_read.pop(root, None)  # re-read the diff at the next assembly

    # -- assembly -------------------------------------------------------------------------

    def _engine_for(self, root: Path, tokenizer) -> ContextEngine | None:
        """The context engine of one folder for this tokenizer (on the project thread)."""
        project = self.projects.get(root)
        if project is None:
            return None
        engine = self.engines.get(root)
        if engine is None or engine.packer.counter is not tokenizer:
            engine = self.engines[root] = ContextEngine(project, tokenizer, tokenizer.special)
            self._changes_read[root] = time.monotonic()
        elif time.monotonic() - self._changes_read.get(root, 0.0) > CHANGES_REFRESH_S:
            engine.refresh_changes()
            self._changes_read[root] = time.monotonic()
        return engine

    def warm(self, tokenizer) -> None:
        """Make each folder's context engine for `tokenizer` ahead of its first use (reading
        the history and indexing every file for retrieval takes up to seconds), once per
        folder and tokenizer, on the project thread after the builds queued there."""
        for root in self.roots():
            if self._warmed.get(root) is not tokenizer:
                self._warmed[root] = tokenizer
                self.thread.submit(self._warm, root, tokenizer)

    def _warm(self, root: Path, tokenizer) -> None:
        engine = self._engine_for(root, tokenizer)
        if engine is not None:
            engine.signals.sync()
            self.collector.freeze_long_lived()  # the engine's indexes live as long as the folder

    def provide(self, tokenizer, uri: str, version: int | None, text: str, offset: int,
                budget: int, layout: str | None = None) -> PackedContext | None:
        """The packed prompt for a completion at `offset` of document `uri`, whose text at
        `version` is `text`; None for a document outside every folder (or `untitled:`) and
        while a project is being built, when the caller uses the buffer alone. Called off the
        event loop; the assembly runs on the project thread, after the edits queued before it."""
        where = self.locate(uri)
        if where is None or self.long_work:
            return None
        packed = self.thread.submit_read(self._provide, tokenizer, *where, text, offset, budget, layout).result()
        if packed is None:
            return None
        self.provided += 1
        self.last_prompt_tokens = packed.prompt_tokens
        return packed

    def _provide(self, tokenizer, root: Path, path: str, text: str, offset: int, budget: int,
                 layout: str | None) -> PackedContext | None:
        engine = self._engine_for(root, tokenizer)
        if engine is None:
            return None
        try:
            return engine.assemble(path, text, offset, budget, layout)
        except (ValueError, OSError) as exc:  # e.g. a budget too small for labels: buffer only
            log.warning("context assembly failed: %s", exc)
            return None

    def index_status(self) -> dict:
        """For `loopls/status`: none | indexing (with progress) | ready (with the file count)."""
        if not self.builds:
            return {"state": "none"}
        if not self.ready:
            done = sum(d for d, _ in self.progress.values())
            total = sum(t for _, t in self.progress.values())
            return {"state": "indexing", "done": done, "total": total}
        return {"state": "ready", "files": sum(len(p.files) for p in dict(self.projects).values())}

    async def context_ids(self, uri: str, text: str, offset: int, budget: int, tokenizer) -> list[int]:
        """The packed context of other files for a position of an open document (the repository
        header and snippets, without the document's own window), for prompts other than
        completions; empty outside the workspace folders or while a project is being built."""
        where = self.locate(uri)
        if where is None or self.long_work:
            return []

        def run() -> list[int]:
            engine = self._engine_for(where[0], tokenizer)
            if engine is None:
                return []
            try:
                packed = engine.assemble(where[1], text, offset, budget)
            except (ValueError, OSError) as exc:
                log.warning("context assembly failed: %s", exc)
                return []
            return packed.token_ids[:packed.context_tokens]

        return await self.read(run)

    def tracked(self) -> dict[str, int]:
        """Work queued on the project thread, and the open buffers the projects hold."""
        return {"project_queue": self.thread.queued(), "settle_timers": len(self.settler),
                "project_documents": sum(len(p.documents) for p in dict(self.projects).values()),
                "project_packed_chars": sum(e.packer.remembered_chars for e in dict(self.engines).values()),
                "explanations": len(self.explanations)}

    def status(self) -> dict:
        """For `loopls/contextStatus`: whether the projects are ready and what they hold."""
        projects = dict(self.projects)
        summaries = [s for s in self.summaries.values() if s is not None]
        roots = [str(r) for r in self.roots()]
        return {
            "root": roots[0] if roots else None,
            "roots": roots,
            "indexed": bool(projects) and self.ready,
            "files": sum(len(p.files) for p in projects.values()),
            "definitions": sum(s.definitions for s in summaries),
            "persistent": bool(summaries) and all(s.persistent for s in summaries),
            "openDocuments": sorted(p for project in projects.values() for p in list(project.documents)),
            "completionPrompts": self.provided,
            "lastPromptTokens": self.last_prompt_tokens,
        }

    async def explain(self, uri: str, position: types.Position, budget: int) -> dict:
        """What a completion prompt at `position` would hold; bounded waits: `explanations.py`."""
        doc = self.server.workspace.text_documents.get(uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"document is not open: {uri}")
        text, version = doc.source, doc.version
        try:  # the document's own line index: no pass over a huge buffer on the event loop
            offset = doc.line_index.offset(position, self.server.workspace.position_encoding or "utf-16")
        except PositionError as exc:
            raise JsonRpcInvalidParams(str(exc)) from None
        where = self.locate(uri)
        if where is None:
            raise JsonRpcInvalidParams(f"{uri} is outside the workspace folders")
        await self.start()
        backend = await self.server.models.ready()
        if backend is None:
            raise JsonRpcInternalError(f"model not available: {self.server.models.error}")
        tokenizer = backend.tokenizer
        layout = self.server.options.completion.layout  # what a completion there would send
        project = self.projects.get(where[0])
        generation = project.generation if project is not None else None  # other files changed: re-assemble
        key = (version, (position.line, position.character), (budget, layout, id(tokenizer), generation))

        def run() -> dict:
            engine = self._engine_for(where[0], tokenizer)
            if engine is None:
                raise JsonRpcInternalError("the workspace could not be indexed")
            return explain(engine.assemble(where[1], text, offset, budget, layout))

        return await self.explanations.get(uri, key, lambda: self.read(run))

    def shutdown(self) -> None:
        self.settler.cancel()
        self.thread.shutdown()


def _fan_out(consumers: list) -> Callable | None:
    if not consumers:
        return None

    def consume(path: str, source: bytes, tree) -> None:
        for consumer in consumers:
            consumer(path, source, tree)

    return consume
