"""Code-smell diagnostics over LSP: pull (`textDocument/diagnostic`, `workspace/diagnostic`)
and push (`textDocument/publishDiagnostics`) for clients that cannot pull.

The whole-project check (metrics, clones, import graph, git history, change impact) runs once
on a thread of its own when the first diagnostics are needed; after that each open document is
re-checked from its buffer (`ProjectChecker.check_file`), so unsaved edits count, including a
changed signature whose call sites in other files no longer match. Findings convert to
diagnostics with source `loopls`, the check code and a `codeDescription` link to docs/smells.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types

from loopls.context.smells import Finding, ProjectChecker, SmellConfig

from .positions import UTF16, units_of
from .server import LooplsServer

log = logging.getLogger(__name__)
SOURCE = "loopls"
PUSH_DELAY_S = 0.3  # push after typing pauses, not on every keystroke
LONG_POLL_S = 20.0  # a workspace pull with nothing new waits this long for an edit


def result_id(diagnostics: list[types.Diagnostic]) -> str:
    """A stable id of a document's diagnostics, so clients can be told "unchanged"."""
    key = [(d.range.start.line, d.range.start.character, d.range.end.line, d.range.end.character, d.code, d.message)
           for d in diagnostics]
    return hashlib.sha1(repr(key).encode("utf-8")).hexdigest()[:16]


def to_diagnostic(finding: Finding, text: str, root: Path, encoding: str = UTF16) -> types.Diagnostic:
    """A finding as an LSP diagnostic; `text` is the document it points into; columns are
    counted in the negotiated position `encoding`."""
    lines = text.splitlines() or [""]

    def position(row: int, column: int) -> types.Position:
        row = min(row, len(lines))
        line = lines[row] if row < len(lines) else ""
        return types.Position(line=row, character=units_of(line[:column], encoding))

    check = finding.check
    related = [types.DiagnosticRelatedInformation(
        location=types.Location(uri=(root / path).as_uri(), range=types.Range(
            start=types.Position(line=row, character=0), end=types.Position(line=row, character=0))),
        message=f"{check.slug}: {path}:{row + 1}") for path, row in finding.related]
    return types.Diagnostic(
        range=types.Range(start=position(*finding.start), end=position(*finding.end)),
        message=finding.message,
        severity=types.DiagnosticSeverity.Warning if check.scope in ("function", "class", "impact", "project")
        else types.DiagnosticSeverity.Information,
        code=finding.code,
        code_description=types.CodeDescription(href=check.doc_url),
        source=SOURCE,
        related_information=related or None,
        data={"code": finding.code, "symbol": finding.symbol, "path": finding.path},
    )


class SmellHost:
    """The project checker of one server, its thread and the documents' latest findings."""

    def __init__(self, server: LooplsServer) -> None:
        self.server = server
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="loopls-smells")
        self._lock = threading.Lock()
        self._checker: asyncio.Future[ProjectChecker | None] | None = None
        self._config: SmellConfig | None = None
        self._push_tasks: dict[str, asyncio.Task] = {}
        self.project_findings: list[Finding] = []
        self.edited = asyncio.Event()  # set on every document event; wakes a waiting workspace pull
        self._synced: dict[str, int | None] = {}  # open document -> version last checked

    @property
    def enabled(self) -> bool:
        return self.server.options.smells.enabled

    def root(self) -> Path | None:
        root = self.server.workspace.root_path
        return Path(root).resolve() if root else None

    def path_of(self, uri: str) -> str | None:
        root = self.root()
        parsed = urlparse(uri)
        if root is None or parsed.scheme != "file":
            return None
        try:
            return Path(unquote(parsed.path)).resolve().relative_to(root).as_posix()
        except ValueError:
            return None  # outside the workspace

    def checker(self) -> asyncio.Future[ProjectChecker | None]:
        """The checked project, started on first use and again after the options change."""
        config = self.server.options.smells.config()
        if self._checker is None or config != self._config or (
                self._checker.done() and self._checker.exception() is not None):
            self._config = config
            self._synced.clear()  # a new checker has seen no buffer yet
            root = self.root()
            loop = asyncio.get_running_loop()
            self._checker = loop.run_in_executor(self.thread, self._check_project, root, config)
        return self._checker

    def _check_project(self, root: Path | None, config: SmellConfig) -> ProjectChecker | None:
        if root is None:
            return None
        checker = ProjectChecker(root, config)
        report = checker.check()
        log.info("smells: %d findings in %d files (%.2f s)", len(report.findings), report.files,
                 report.timings.get("total", 0.0))
        with self._lock:
            self.project_findings = report.findings
        return checker

    async def document_diagnostics(self, uri: str) -> list[types.Diagnostic]:
        if not self.enabled:
            return []
        path = self.path_of(uri)
        doc = self.server.workspace.text_documents.get(uri)
        if path is None:
            return []
        checker = await self.checker()
        if checker is None:
            return []
        text = doc.source if doc is not None else None
        loop = asyncio.get_running_loop()
        before = _signature_state(checker)
        await self._sync_buffers(checker, skip=uri)
        findings = await loop.run_in_executor(self.thread, self._check_file, checker, path, text)
        if doc is not None:
            self._synced[uri] = doc.version
        if _signature_state(checker) != before:
            self._signatures_changed(uri)
        if text is None:
            text = (checker.root / path).read_text(encoding="utf-8", errors="replace")
        return [to_diagnostic(f, text, checker.root, self.server.encoding) for f in findings]

    def forget(self, uri: str) -> None:
        """A closed document counts from the disk again (its unsaved signature changes are gone)."""
        task = self._push_tasks.pop(uri, None)
        if task is not None:
            task.cancel()
        self._synced.pop(uri, None)
        path = self.path_of(uri)
        checker = self._checker
        if path is None or checker is None or not checker.done() or checker.exception() is not None:
            return
        if checker.result() is not None:
            self.thread.submit(self._check_file, checker.result(), path, None)

    async def _sync_buffers(self, checker: ProjectChecker, skip: str) -> None:
        """Re-check open documents edited since their last check, so that a signature changed in
        one unsaved buffer is known before call sites in another are judged."""
        loop = asyncio.get_running_loop()
        for uri, doc in list(self.server.workspace.text_documents.items()):
            path = self.path_of(uri)
            if uri == skip or path is None or self._synced.get(uri) == doc.version:
                continue
            await loop.run_in_executor(self.thread, self._check_file, checker, path, doc.source)
            self._synced[uri] = doc.version

    def _check_file(self, checker: ProjectChecker, path: str, text: str | None) -> list[Finding]:
        try:
            return checker.check_file(path, text)
        except (OSError, ValueError, UnicodeError) as exc:  # a bad file must not break the server
            log.warning("smells: cannot check %s: %s", path, exc)
            return []

    async def _workspace_items(self, checker: ProjectChecker) -> list[tuple[str, list[types.Diagnostic], int | None]]:
        """(uri, diagnostics, version) for every file with findings and every open document."""
        by_path: dict[str, list[Finding]] = {}
        for finding in self.project_findings:
            by_path.setdefault(finding.path, []).append(finding)
        open_docs = {self.path_of(uri): uri for uri in self.server.workspace.text_documents}
        items = []
        for path in sorted(set(by_path) | {p for p in open_docs if p}):
            uri = open_docs.get(path) or (checker.root / path).as_uri()
            if path in open_docs:
                diagnostics = await self.document_diagnostics(uri)
            else:
                state = checker.files.get(path)
                text = state.source.decode("utf-8", "replace") if state else ""
                diagnostics = [to_diagnostic(f, text, checker.root, self.server.encoding) for f in by_path[path]]
            doc = self.server.workspace.text_documents.get(uri)
            items.append((uri, diagnostics, doc.version if doc is not None else None))
        return items

    async def workspace_report(self, previous: dict[str, str] | None = None,
                               wait_s: float = LONG_POLL_S) -> types.WorkspaceDiagnosticReport:
        """Every file's diagnostics; files whose result id the client already has come back as
        unchanged. When nothing changed at all, wait (up to `wait_s`) for an edit first, so that
        a client re-asking right away does not spin."""
        previous = previous or {}
        if not self.enabled:
            return types.WorkspaceDiagnosticReport(items=[])
        checker = await self.checker()
        if checker is None:
            return types.WorkspaceDiagnosticReport(items=[])
        items = await self._workspace_items(checker)
        if previous and wait_s > 0 and all(previous.get(uri) == result_id(d) for uri, d, _ in items):
            self.edited.clear()
            try:
                await asyncio.wait_for(self.edited.wait(), wait_s)
                items = await self._workspace_items(checker)
            except asyncio.TimeoutError:
                pass
        reports: list = []
        for uri, diagnostics, version in items:
            rid = result_id(diagnostics)
            if previous.get(uri) == rid:
                reports.append(types.WorkspaceUnchangedDocumentDiagnosticReport(uri=uri, result_id=rid, version=version))
            else:
                reports.append(types.WorkspaceFullDocumentDiagnosticReport(
                    uri=uri, items=diagnostics, version=version, result_id=rid))
        return types.WorkspaceDiagnosticReport(items=reports)

    def _signatures_changed(self, changed_uri: str) -> None:
        """A signature changed in `changed_uri`: call sites in other documents need a fresh look."""
        if self.client_pulls():
            refresh = self.server.client_capabilities.workspace
            if refresh and refresh.diagnostics and refresh.diagnostics.refresh_support:
                self.server.workspace_diagnostic_refresh(None)
            return
        for uri in list(self.server.workspace.text_documents):
            if uri != changed_uri:
                self.schedule_push(uri)

    # -- push, for clients without pull diagnostics ------------------------------------------
    def client_pulls(self) -> bool:
        caps = self.server.client_capabilities
        return bool(caps and caps.text_document and caps.text_document.diagnostic is not None)

    def schedule_push(self, uri: str, delay: float = PUSH_DELAY_S) -> None:
        self.edited.set()  # every document event comes through here
        if self.client_pulls():
            return
        previous = self._push_tasks.pop(uri, None)
        if previous is not None:
            previous.cancel()
        self._push_tasks[uri] = asyncio.ensure_future(self._push(uri, delay))

    async def _push(self, uri: str, delay: float) -> None:
        await asyncio.sleep(delay)
        doc = self.server.workspace.text_documents.get(uri)
        try:
            diagnostics = await self.document_diagnostics(uri)
        except Exception:  # noqa: BLE001 - push runs unattended: log, never kill the server
            log.exception("smells: diagnostics for %s failed", uri)
            return
        self.server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=uri, diagnostics=diagnostics, version=doc.version if doc is not None else None))


def _signature_state(checker: ProjectChecker) -> dict:
    return {path: [(c.new.qualname, c.new.text) for c in changes] for path, changes in checker.changes.items()}


def register_smell_features(server: LooplsServer) -> SmellHost:
    """Diagnostics (pull and push) and quick-fix code actions for code smells."""
    from .code_actions import register_smell_code_actions

    host = SmellHost(server)

    @server.feature(types.TEXT_DOCUMENT_DIAGNOSTIC, types.DiagnosticOptions(
        identifier=SOURCE, inter_file_dependencies=True, workspace_diagnostics=True))
    async def document_diagnostic(ls: LooplsServer, params: types.DocumentDiagnosticParams):
        items = await host.document_diagnostics(params.text_document.uri)
        rid = result_id(items)
        if params.previous_result_id == rid:
            return types.RelatedUnchangedDocumentDiagnosticReport(result_id=rid)
        return types.RelatedFullDocumentDiagnosticReport(items=items, result_id=rid)

    @server.feature(types.WORKSPACE_DIAGNOSTIC)
    async def workspace_diagnostic(ls: LooplsServer, params: types.WorkspaceDiagnosticParams) -> types.WorkspaceDiagnosticReport:
        return await host.workspace_report({p.uri: p.value for p in params.previous_result_ids or []})

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LooplsServer, params: types.DidOpenTextDocumentParams) -> None:
        host.schedule_push(params.text_document.uri, delay=0.0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LooplsServer, params: types.DidChangeTextDocumentParams) -> None:
        host.schedule_push(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: LooplsServer, params: types.DidSaveTextDocumentParams) -> None:
        host.schedule_push(params.text_document.uri, delay=0.0)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LooplsServer, params: types.DidCloseTextDocumentParams) -> None:
        host.forget(params.text_document.uri)
        if not host.client_pulls():  # closed files keep no diagnostics in push mode
            ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
                uri=params.text_document.uri, diagnostics=[]))

    register_smell_code_actions(server, host)
    return host
