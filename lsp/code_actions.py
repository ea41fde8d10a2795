"""Code actions: the deterministic refactors, the model-driven rewrites and the smell quick fixes.

`textDocument/codeAction` lists what applies at the selection. Deterministic refactors are
computed and verified there (on the refactor thread, never on the event loop), so an action
that cannot be done safely is listed disabled with the reason; clients that resolve lazily
get the edit from `codeAction/resolve`, others with the action. Model-driven rewrites and
smell quick fixes cost nothing to list: the model runs on resolve, and its answer is
verified before it becomes an edit. A resolve for a document that changed since the action
was listed answers ContentModified (-32801): the client asks again.

The answer never waits on the refactor thread for a long document: it lists what is ready
(the smell quick fixes of the last diagnostics, and the refactors of this document version
and selection when a listing of them has finished) and starts the listing in the
background; the client asks again on the next cursor move or menu, and the same request
(same document version and selection) is then answered from it. A document under
`SHORT_LINES` lines is listed in milliseconds and awaited. One listing runs at a time: a
request arriving while the thread is busy with another lists no refactors rather than
queueing behind it. A document of 20,000 lines takes seconds to analyse for an
extract-function.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcContentModified, JsonRpcInvalidParams
from pygls.uris import to_fs_path

from loopls.context.languages import Languages, language_for_path
from loopls.context.refactor import (MAX_LINES, Refactoring, RewriteOffer, Source, finish_rewrite,
                                     first_party_modules, kind_matches, refactorings, rewrite_offers, smell_offer)
from loopls.context.smells.checks import BY_CODE

from .positions import LineIndex, PositionError
from .refactor_edits import ClientSupport, action_data, checked_data, data_range, workspace_edit
from .rewrites import UNTRAINED_HINT, model_answer

if TYPE_CHECKING:
    from .context_features import ContextHost
    from .diagnostics import SmellHost

MODEL_KINDS = frozenset({"refactor.rewrite.docstring", "refactor.rewrite.typeHints", "refactor.rewrite.simplify",
                         "quickfix"})
OFFERED_KINDS = [types.CodeActionKind.QuickFix, types.CodeActionKind.Refactor, types.CodeActionKind.RefactorExtract,
                 types.CodeActionKind.RefactorInline, types.CodeActionKind.RefactorRewrite,
                 types.CodeActionKind.SourceOrganizeImports]
log = logging.getLogger(__name__)
REMEMBERED = 64  # listed refactors kept for their resolve
SHORT_LINES = 2_000  # documents this short compute their refactors in milliseconds: always awaited
COMPUTED = 8  # refactor listings finished after their request answered, kept for the same request again


class RefactorHost:
    """The server's code actions: a thread for the syntax work and the refactors last listed."""

    def __init__(self, server: Any, context: ContextHost, smells: SmellHost) -> None:
        self.server = server
        self.context = context
        self.smells = smells
        self.languages = Languages()
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="loopls-refactor")
        self._listed: OrderedDict[tuple, Refactoring] = OrderedDict()
        self._computing: dict[tuple, asyncio.Future] = {}  # listings in flight on the thread
        self._computed: OrderedDict[tuple, tuple] = OrderedDict()  # ... and finished after their answer
        self._first_party: dict[Path, frozenset[str]] = {}

    def shutdown(self) -> None:
        self.thread.shutdown(wait=False, cancel_futures=True)

    # -- listing --------------------------------------------------------------------------------

    async def actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        doc = self.server.workspace.text_documents.get(uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"document is not open: {uri}")
        text, version, path = doc.source, doc.version, self._path(uri)
        start, end = self._offsets(text, params.range)
        only = list(params.context.only) if params.context.only else None
        automatic = params.context.trigger_kind == types.CodeActionTriggerKind.Automatic
        if automatic and only is None:
            only = ["refactor", "quickfix"]  # the light bulb: source actions have their own menu
        support = ClientSupport(self.server.client_capabilities)
        # The light bulb asks on every cursor move and shows no disabled actions: there the
        # edits are verified when one is resolved; a menu (and any eager client) gets them
        # verified now, so that refused ones are listed with their reason.
        verify_now = not (automatic and support.lazy_edits)
        key = (uri, version, start, end, tuple(only) if only is not None else None, automatic, verify_now)
        lines = text.count("\n", 0, len(text))
        busy = bool(self._computing)
        job = None if lines > MAX_LINES else self._listing(
            key, text, path, start, end, only, self._first_party_of(uri), not automatic and support.lazy_edits,
            verify_now)
        why_none = f"refactors are not offered in files over {MAX_LINES:,} lines (this one has {lines:,})" \
            if lines > MAX_LINES else "loopls is still computing the refactors here: ask again in a moment"
        if job is None:  # too long, or the thread is busy with another listing: none queued behind it
            found, offers = [], []
        elif lines < SHORT_LINES and not busy:
            found, offers = await asyncio.shield(job)
        else:  # what is ready: a wait here could only push the answer past the latency goal
            found, offers = job.result() if job.done() else ([], [])
        pending = job is None or not job.done()
        actions = []  # quick fixes of the diagnostics here first, as editors list them
        if kind_matches("quickfix", only) and support.lazy_edits:
            actions.extend(await self._quick_fixes(uri, version, params))
        for r in found:
            if r.reason is not None and not support.disabled:
                continue
            if verify_now:
                self._remember((uri, version, r.kind, r.title, start, end), r)
            action = types.CodeAction(title=r.title, kind=r.kind, data=action_data(uri, version, r.kind, r.title,
                                                                                    params.range))
            if r.reason is not None:
                action.disabled = types.CodeActionDisabled(reason=r.reason)
            elif not support.lazy_edits:
                action.edit = workspace_edit(uri, version, text, r, support, self.server.encoding)
            actions.append(action)
        actions.extend(types.CodeAction(title=o.title, kind=o.kind, data=action_data(
            uri, version, o.kind, o.title, params.range)) for o in offers)
        if pending and not automatic and support.disabled and kind_matches("refactor", only):
            actions.append(types.CodeAction(  # a menu says why it lists no refactors
                title="Refactors", kind=types.CodeActionKind.Refactor,
                disabled=types.CodeActionDisabled(reason=why_none)))
        return actions

    def _listing(self, key: tuple, *args: Any) -> asyncio.Future | None:
        """The refactors and offers for `key`: remembered, in flight, or computed now; None
        while another listing is in flight (at most one runs, so none waits behind others)."""
        if key in self._computed:
            result = self._computed[key]
            done = asyncio.get_running_loop().create_future()
            done.set_result(result)
            return done
        job = self._computing.get(key)
        if job is None and self._computing:
            return None
        if job is None:
            job = self._computing[key] = asyncio.ensure_future(
                asyncio.get_running_loop().run_in_executor(self.thread, self._compute, *args))
            job.add_done_callback(lambda finished: self._finished(key, finished))
        return job

    def _finished(self, key: tuple, job: asyncio.Future) -> None:
        self._computing.pop(key, None)
        if job.cancelled():
            return
        if job.exception() is not None:  # a request still waiting gets the error itself
            log.warning("code actions: listing refactors failed: %s", job.exception())
            return
        self._computed[key] = job.result()
        while len(self._computed) > COMPUTED:
            self._computed.popitem(last=False)

    def _compute(self, text: str, path: str, start: int, end: int, only: list[str] | None,
                 first_party: frozenset[str], rewrites: bool,
                 verified: bool) -> tuple[list[Refactoring], list[RewriteOffer]]:
        """On the refactor thread: the deterministic refactors and the rewrite offers."""
        found = refactorings(text, path, start, end, self.languages, only, first_party, verified)
        language = language_for_path(path)
        offers: list[RewriteOffer] = []
        if rewrites and language is not None and any(kind_matches(k, only) for k in MODEL_KINDS - {"quickfix"}):
            src = Source(text, language, self.languages)
            offers = [o for o in rewrite_offers(src, start, end) if kind_matches(o.kind, only)]
        return found, offers

    async def _quick_fixes(self, uri: str, version: int | None, params: types.CodeActionParams) -> list[types.CodeAction]:
        diagnostics = [d for d in params.context.diagnostics if d.source == "loopls"]
        if not diagnostics:  # the last ones, never waiting for a check (their version goes in the data)
            version, known = self.smells.available(uri)
            diagnostics = [d for d in known
                           if d.range.start.line <= params.range.end.line and d.range.end.line >= params.range.start.line]
        actions = []
        for d in diagnostics:
            if not isinstance(d.data, dict) or not isinstance(d.data.get("code"), str):
                continue
            code = d.data["code"]
            check = BY_CODE.get(code)
            slug = check.slug if check is not None else code
            title = f"Refactor with the model: {slug} ({code})"
            actions.append(types.CodeAction(
                title=title, kind=types.CodeActionKind.QuickFix, diagnostics=[d],
                data=action_data(uri, version, "quickfix", title, d.range, code=code, slug=slug,
                                 symbol=str(d.data.get("symbol", "")), message=d.message,
                                 startRow=d.range.start.line, endRow=d.range.end.line)))
        return actions

    # -- resolving ------------------------------------------------------------------------------

    async def resolve(self, action: types.CodeAction) -> types.CodeAction:
        data = checked_data(action.data)
        uri = data["uri"]
        doc = self.server.workspace.text_documents.get(uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"document is not open: {uri}")
        if data["version"] is not None and doc.version != data["version"]:
            raise JsonRpcContentModified("the document changed since this action was offered; ask again")
        text, path = doc.source, self._path(uri)
        start, end = self._offsets(text, data_range(data))
        model = data["kind"] in MODEL_KINDS
        if model:
            result = await self._resolve_rewrite(uri, text, path, start, end, data)
        else:
            result = self._listed.get((uri, data["version"], data["kind"], data["title"], start, end))
            if result is None:
                found = await asyncio.get_running_loop().run_in_executor(
                    self.thread, refactorings, text, path, start, end, self.languages, [data["kind"]],
                    self._first_party_of(uri))
                result = next((r for r in found if r.title == data["title"]), None)
        if result is None:
            action.edit, action.disabled = None, types.CodeActionDisabled(reason="this refactor no longer applies here")
        elif result.offered:
            support = ClientSupport(self.server.client_capabilities)
            action.edit = workspace_edit(uri, doc.version, text, result, support, self.server.encoding,
                                         needs_confirmation=model)
            action.disabled = None
        else:
            action.edit, action.disabled = None, types.CodeActionDisabled(reason=result.reason or "no edit")
            if model:
                self.server.window_show_message(types.ShowMessageParams(
                    type=types.MessageType.Warning, message=f"loopls: {action.title}: {result.reason}"))
        return action

    async def _resolve_rewrite(self, uri: str, text: str, path: str, start: int, end: int,
                               data: dict) -> Refactoring | None:
        language = language_for_path(path)
        if language is None:
            return None
        loop = asyncio.get_running_loop()
        src = await loop.run_in_executor(self.thread, Source, text, language, self.languages)
        if data["kind"] == "quickfix":
            offer = await loop.run_in_executor(
                self.thread, smell_offer, src, self._relative(uri, path), data.get("code", ""), data.get("slug", ""),
                data.get("symbol", ""), data.get("message", ""), data.get("startRow", 0), data.get("endRow", 0))
        else:
            offers = await loop.run_in_executor(self.thread, rewrite_offers, src, start, end)
            offer = next((o for o in offers if o.kind == data["kind"] and o.title == data["title"]), None)
        if offer is None:
            return None
        answer = await model_answer(self.server, self.context, uri, src, offer)
        if answer.text is None:
            return Refactoring(offer.kind, offer.title, target=offer.target, reason=answer.error)
        result = await loop.run_in_executor(self.thread, finish_rewrite, src, offer, answer.text, self.languages)
        if result.reason is not None and answer.untrained:
            result = result.refused(result.reason + UNTRAINED_HINT)
        return result

    # -- helpers -------------------------------------------------------------------------------

    def _remember(self, key: tuple, refactoring: Refactoring) -> None:
        self._listed[key] = refactoring
        self._listed.move_to_end(key)
        while len(self._listed) > REMEMBERED:
            self._listed.popitem(last=False)

    def _offsets(self, text: str, rng: types.Range) -> tuple[int, int]:
        try:
            return LineIndex(text).span(rng, self.server.encoding)
        except PositionError as exc:
            raise JsonRpcInvalidParams(str(exc)) from None

    @staticmethod
    def _path(uri: str) -> str:
        """A path for the document's language (its own file name; `untitled:` has none)."""
        return (to_fs_path(uri) if uri.startswith("file:") else None) or uri

    def _relative(self, uri: str, path: str) -> str:
        where = self.context.locate(uri)
        return where[1] if where is not None else Path(path).name

    def _first_party_of(self, uri: str) -> frozenset[str]:
        where = self.context.locate(uri)
        if where is None:
            return frozenset()
        root = where[0]
        if root not in self._first_party:
            self._first_party[root] = first_party_modules(root)
        return self._first_party[root]


def register_code_actions(server: Any, host: RefactorHost) -> None:
    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                    types.CodeActionOptions(code_action_kinds=OFFERED_KINDS, resolve_provider=True))
    async def code_action(ls: Any, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        return await host.actions(params) or None

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def code_action_resolve(ls: Any, action: types.CodeAction) -> types.CodeAction:
        return await host.resolve(action)

