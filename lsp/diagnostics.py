"""Code-smell diagnostics over LSP: pull (`textDocument/diagnostic`, `workspace/diagnostic`)
and push (`textDocument/publishDiagnostics`) for clients that cannot pull.

The smell checker of each workspace folder reads that folder's project model. On a cold
start it analyses every file from the same parse the symbol index makes (`ContextHost`'s
build calls `tree_consumer`), then finishes the whole-project checks (clones, import cycles,
history, change impact); after that each open document is re-checked from its buffer, so
unsaved edits count, including a changed signature whose call sites in other files no longer
match. All of it, conversion to diagnostics included, runs on the project thread: the event
loop only awaits results. Each file reports at most `maxFindingsPerFile` findings, and a file
over the size or line limit one note saying it was not checked.

Requests never wait long for that thread: the last diagnostics of each document are kept
with the document version they describe. A pull from a client that can be asked to pull
again (`workspace/diagnostic/refresh`) waits for fresh ones only when the document's last
check came back within `PULL_WAIT_S` (a short file: no refresh round trip for it); otherwise
it answers with the last ones at once and sends the refresh when the fresh ones are ready.
Code actions list the quick fixes of the last diagnostics (their actions carry that
version, so resolving one after the document changed answers ContentModified).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from loopls.context.project import Project
from loopls.context.smells import Finding, ProjectChecker, SmellConfig

from .context_features import ContextHost
from .positions import UTF16, units_of

log = logging.getLogger(__name__)
SOURCE = "loopls"
PUSH_DELAY_S = 0.3  # push after typing pauses, not on every keystroke
LONG_POLL_S = 20.0  # a workspace pull with nothing new waits this long for an edit
PULL_WAIT_S = 0.03  # a pull waits this long for fresh diagnostics, when the last check took no longer


def result_id(diagnostics: list[types.Diagnostic]) -> str:
    """A stable id of a document's diagnostics, so clients can be told "unchanged"."""
    key = [(d.range.start.line, d.range.start.character, d.range.end.line, d.range.end.character, d.code, d.message)
           for d in diagnostics]
    return hashlib.sha1(repr(key).encode("utf-8")).hexdigest()[:16]


def to_diagnostics(findings: list[Finding], text: str, root: Path, encoding: str = UTF16) -> list[types.Diagnostic]:
    """Findings of one document as LSP diagnostics; the text is split into lines once (rows
    count `\\n` as tree-sitter does); columns in the negotiated position `encoding`."""
    lines = text.split("\n")
    return [to_diagnostic(f, lines, root, encoding) for f in findings]


def to_diagnostic(finding: Finding, lines: list[str], root: Path, encoding: str = UTF16) -> types.Diagnostic:
    """A finding as an LSP diagnostic; `lines` are the lines of the document it points into."""

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
    """The smell checkers of one server (one per project), and the documents' latest findings."""

    def __init__(self, server: LanguageServer, context: ContextHost) -> None:
        self.server = server
        self.context = context
        self.checkers: dict[Path, ProjectChecker] = {}  # on the project thread only
        self.project_findings: dict[Path, list[Finding]] = {}
        self._push_tasks: dict[str, asyncio.Task] = {}
        self.latest: dict[str, tuple[int | None, list[types.Diagnostic]]] = {}  # uri -> (version, diagnostics)
        self._checks: dict[str, tuple[int | None, asyncio.Future]] = {}  # uri -> the check in flight
        self._check_s: dict[str, float] = {}  # uri -> how long its last check took to come back
        self.edited = asyncio.Event()  # set on every document event; wakes a waiting workspace pull
        self._closed = False  # after the server's shutdown: nothing is pushed or refreshed
        context.tree_consumers.append(self.tree_consumer)
        context.on_built.append(self._finish)

    @property
    def enabled(self) -> bool:
        return self.server.options.smells.enabled

    def _config(self) -> SmellConfig:
        return self.server.options.smells.config()

    def _encoding(self) -> str:
        return self.server.workspace.position_encoding or UTF16  # negotiated at initialize

    def path_of(self, uri: str) -> str | None:
        where = self.context.locate(uri)
        return where[1] if where is not None else None

    # -- on the project thread ----------------------------------------------------------------
    def tree_consumer(self, project: Project):
        """The new checker's per-file analysis, fed by the project's cold build."""
        if not self.enabled:
            return None
        checker = self.checkers[project.root] = ProjectChecker(project, self._config())
        return checker.analyse

    def _finish(self, project: Project) -> None:
        if project.root in self.checkers:
            self._check_project(project)

    def _checker(self, root: Path) -> ProjectChecker | None:
        """The folder's checker, made anew (a whole-project check) when the options changed."""
        project = self.context.projects.get(root)
        if project is None:
            return None
        checker = self.checkers.get(root)
        if checker is None or checker.project is not project or checker.config != self._config():
            self.checkers[root] = ProjectChecker(project, self._config())
            self._check_project(project)
        return self.checkers[root]

    def _check_project(self, project: Project) -> None:
        self.context.long_work += 1
        try:
            report = self.checkers[project.root].check()
        finally:
            self.context.long_work -= 1
        log.info("smells: %d findings in %d files of %s (%.2f s)", len(report.findings), report.files, project.root,
                 report.timings.get("total", 0.0))
        self.project_findings[project.root] = report.findings

    def _document_findings(self, root: Path, path: str) -> tuple[list[Finding], bool]:
        """(findings of one file, whether a signature changed in an open buffer meanwhile)."""
        checker = self._checker(root)
        if checker is None:
            return [], False
        before = _signature_state(checker)
        for other in list(checker.project.documents):  # a signature changed in another unsaved buffer
            if other != path:
                checker.refresh(other)
        findings = checker.findings_for(path)
        return findings, _signature_state(checker) != before

    def _unless_superseded(self, uri: str, version: int | None, root: Path,
                           path: str) -> tuple[list[types.Diagnostic], bool] | None:
        """`_diagnostics`, or None when a check of a newer version of the document was asked
        for meanwhile (it is queued behind this one): typing never piles up checks."""
        running = self._checks.get(uri)  # read across threads: an old answer only costs a check
        if running is not None and running[0] != version:
            return None
        return self._diagnostics(root, path)

    def _diagnostics(self, root: Path, path: str) -> tuple[list[types.Diagnostic], bool]:
        findings, changed = self._document_findings(root, path)
        text = self.context.projects[root].text(path) if root in self.context.projects else None
        return to_diagnostics(findings, text or "", root, self._encoding()), changed

    def _workspace_items(self) -> list[tuple[str, list[types.Diagnostic], str | None]]:
        """(uri, diagnostics, path of an open document or None) for every file with findings
        and every open document, in every folder."""
        items = []
        for root in list(self.context.projects):
            checker = self._checker(root)
            if checker is None:
                continue
            by_path: dict[str, list[Finding]] = {}
            for finding in self.project_findings.get(root, []):
                by_path.setdefault(finding.path, []).append(finding)
            open_docs = set(checker.project.documents)
            for path in sorted(set(by_path) | open_docs):
                if path in open_docs:
                    diagnostics, _ = self._diagnostics(root, path)
                else:
                    state = checker.files.get(path)
                    text = state.source.decode("utf-8", "replace") if state else ""
                    diagnostics = to_diagnostics(by_path[path], text, root, self._encoding())
                items.append(((root / path).as_uri(), diagnostics, path if path in open_docs else None))
        return items

    # -- on the event loop ---------------------------------------------------------------------
    async def _ready(self, uri: str) -> tuple[Path, str] | None:
        where = self.context.locate(uri)
        if where is None or not self.enabled:
            return None
        await self.context.start()
        return where

    def _version(self, uri: str) -> int | None:
        doc = self.server.workspace.text_documents.get(uri)
        return doc.version if doc is not None else None

    def _job(self, uri: str) -> asyncio.Future:
        """The check of the document's current version: the one in flight, or a new one."""
        version = self._version(uri)
        running = self._checks.get(uri)
        if running is None or running[0] != version or running[1].done():
            running = self._checks[uri] = (version, asyncio.ensure_future(self._check(uri, version)))
        return running[1]

    async def document_diagnostics(self, uri: str) -> list[types.Diagnostic]:
        """Fresh diagnostics of one document (a cancelled request leaves its check running)."""
        return await asyncio.shield(self._job(uri))

    async def _check(self, uri: str, version: int | None) -> list[types.Diagnostic]:
        # The project thread applies edits in the order they came, so what it checks here is
        # the document at `version`: edits made later are queued behind this check.
        try:
            where = await self._ready(uri)
            if where is None:
                return []
            started = time.perf_counter()
            checked = await self.context.run(self._unless_superseded, uri, version, *where)
            if checked is not None and uri in self.server.workspace.text_documents:
                self._check_s[uri] = time.perf_counter() - started
        finally:
            if uri in self._checks and self._checks[uri][0] == version:
                del self._checks[uri]
        if checked is None:  # the newer version's check answers
            return await asyncio.shield(self._job(uri))
        diagnostics, signatures_changed = checked
        known = self.latest.get(uri)
        if uri in self.server.workspace.text_documents and (known is None or known[0] is None or version is None
                                                            or known[0] <= version):
            self.latest[uri] = (version, diagnostics)
        if signatures_changed:
            self._signatures_changed(uri)
        return diagnostics

    async def pull(self, uri: str) -> list[types.Diagnostic]:
        """A document pull: fresh diagnostics, or, when the client can be asked to pull again
        and they are not ready (within `PULL_WAIT_S` for a document checked that fast last
        time), the last ones (a refresh follows the fresh ones)."""
        job = self._job(uri)
        if not self._refresh_supported():
            return await asyncio.shield(job)
        if not job.done() and self._check_s.get(uri, 0.0) <= PULL_WAIT_S:
            await asyncio.wait({job}, timeout=PULL_WAIT_S)
        if job.done():
            return job.result()
        known = self.latest.get(uri)
        answered = known[1] if known is not None else []
        job.add_done_callback(lambda fresh: self._refresh_if_changed(fresh, result_id(answered)))
        return answered

    def _refresh_if_changed(self, fresh: asyncio.Future, answered: str) -> None:
        """The fresh diagnostics are in: ask the client to pull again if they differ from the
        ones it got (equal ones end the cycle, however long the next check takes)."""
        if fresh.cancelled() or self._closed:
            return
        if fresh.exception() is not None:
            log.warning("smells: diagnostics failed: %s", fresh.exception())
        elif result_id(fresh.result()) != answered:
            self.server.workspace_diagnostic_refresh(None)

    def _refresh_supported(self) -> bool:
        caps = self.server.client_capabilities
        workspace = caps.workspace if caps is not None else None
        return bool(workspace and workspace.diagnostics and workspace.diagnostics.refresh_support)

    def available(self, uri: str) -> tuple[int | None, list[types.Diagnostic]]:
        """The last diagnostics of a document and the version they describe, without waiting
        (none yet: a check is started, for the next request)."""
        known = self.latest.get(uri)
        if known is None or known[0] != self._version(uri):
            if self.enabled and uri not in self._checks and uri in self.server.workspace.text_documents:
                self._job(uri).add_done_callback(_log_failure)
        return known if known is not None else (self._version(uri), [])

    async def workspace_report(self, previous: dict[str, str] | None = None,
                               wait_s: float = LONG_POLL_S) -> types.WorkspaceDiagnosticReport:
        """Every file's diagnostics; files whose result id the client already has come back as
        unchanged. When nothing changed at all, wait (up to `wait_s`) for an edit first, so that
        a client re-asking right away does not spin."""
        previous = previous or {}
        if not self.enabled:
            return types.WorkspaceDiagnosticReport(items=[])
        await self.context.start()
        items = await self.context.run(self._workspace_items)
        if previous and wait_s > 0 and all(previous.get(uri) == result_id(d) for uri, d, _ in items):
            self.edited.clear()
            try:
                await asyncio.wait_for(self.edited.wait(), wait_s)
                items = await self.context.run(self._workspace_items)
            except asyncio.TimeoutError:
                pass
        reports: list = []
        for uri, diagnostics, _ in items:
            version = self._version(uri)
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
            if self._refresh_supported():
                self.server.workspace_diagnostic_refresh(None)
            return
        for uri in list(self.server.workspace.text_documents):
            if uri != changed_uri:
                self.schedule_push(uri)

    def document_event(self, method: str, params) -> None:
        """The server's fan-out: documents opened, changed, saved or closed."""
        if method == types.TEXT_DOCUMENT_DID_CLOSE:
            self.forget(params.text_document.uri)
        elif method in (types.TEXT_DOCUMENT_DID_OPEN, types.TEXT_DOCUMENT_DID_SAVE):
            self.schedule_push(params.text_document.uri, delay=0.0)
        elif method == types.TEXT_DOCUMENT_DID_CHANGE:
            self.schedule_push(params.text_document.uri)
        elif method in (types.WORKSPACE_DID_CHANGE_WATCHED_FILES, types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS):
            self.edited.set()

    def forget(self, uri: str) -> None:
        """A closed document counts from the disk again (the project closed its buffer)."""
        self.edited.set()
        self.latest.pop(uri, None)
        self._check_s.pop(uri, None)
        task = self._push_tasks.pop(uri, None)
        if task is not None:
            task.cancel()
        if not self.client_pulls():  # closed files keep no diagnostics in push mode
            self.server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    def shutdown(self) -> None:
        """No push after `shutdown`: the project thread is going away, so a pending push
        would only fail (and log a traceback) or publish to a client that is leaving."""
        self._closed = True
        for task in self._push_tasks.values():
            task.cancel()
        self._push_tasks.clear()

    def tracked(self) -> dict[str, int]:
        return {"push_tasks": len(self._push_tasks), "smell_results": len(self.latest), "smell_checks": len(self._checks)}

    # -- push, for clients without pull diagnostics ------------------------------------------
    def client_pulls(self) -> bool:
        caps = self.server.client_capabilities
        return bool(caps and caps.text_document and caps.text_document.diagnostic is not None)

    def schedule_push(self, uri: str, delay: float = PUSH_DELAY_S) -> None:
        self.edited.set()  # every document event comes through here
        if self._closed or self.client_pulls():
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
            if not self._closed:  # after shutdown the project thread refuses work: expected
                log.exception("smells: diagnostics for %s failed", uri)
            return
        if self._closed:
            return
        self.server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=uri, diagnostics=diagnostics, version=doc.version if doc is not None else None))


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("smells: diagnostics failed: %s", future.exception())


def _signature_state(checker: ProjectChecker) -> dict:
    return {path: [(c.new.qualname, c.new.text) for c in changes] for path, changes in checker.changes.items()}


def register_smell_features(server: LanguageServer, host: SmellHost) -> None:
    """Pull diagnostics for code smells (push follows the server's document events)."""

    @server.feature(types.TEXT_DOCUMENT_DIAGNOSTIC, types.DiagnosticOptions(
        identifier=SOURCE, inter_file_dependencies=True, workspace_diagnostics=True))
    async def document_diagnostic(ls: LanguageServer, params: types.DocumentDiagnosticParams):
        items = await host.pull(params.text_document.uri)
        rid = result_id(items)
        if params.previous_result_id == rid:
            return types.RelatedUnchangedDocumentDiagnosticReport(result_id=rid)
        return types.RelatedFullDocumentDiagnosticReport(items=items, result_id=rid)

    @server.feature(types.WORKSPACE_DIAGNOSTIC)
    async def workspace_diagnostic(ls: LanguageServer, params: types.WorkspaceDiagnosticParams) -> types.WorkspaceDiagnosticReport:
        return await host.workspace_report({p.uri: p.value for p in params.previous_result_ids or []})
