"""Quick fixes for code smells: hand the finding to the model-driven refactor.

`textDocument/codeAction` offers one `quickfix` per loopls diagnostic, cheaply (no model call).
`codeAction/resolve` then builds a prompt that describes the finding and quotes the code
(the whole function or class it is about, else the lines it covers), asks the loaded model,
and returns a WorkspaceEdit only if the document with the replacement parses without ERROR
nodes and the document has not changed since the action was offered. Otherwise the action
comes back without an edit, disabled, with the reason (the untrained tiny default model
writes random text, so this is what it gets).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from loopls.context.languages import Languages, language_for_path
from loopls.context.privacy import inserted_secret, redact
from loopls.context.smells import analyze_tree
from loopls.context.smells.checks import BY_CODE
from loopls.engine.backends import Backend, BackendError
from loopls.engine.backends.base import Priority, SamplingParams
from loopls.engine.model.generate import cut_at_stop

from .model_host import ModelUnavailable, guard_prompt
from .positions import UTF16, LineIndex

log = logging.getLogger(__name__)
MAX_NEW_TOKENS = 512
_FENCE = re.compile(r"```[\w+-]*\n(.*?)(?:```|$)", re.S)


def quick_fixes(uri: str, version: int | None, diagnostics: list[types.Diagnostic]) -> list[types.CodeAction]:
    actions = []
    for d in diagnostics:
        if d.source != "loopls" or not isinstance(d.data, dict) or "code" not in d.data:
            continue
        check = BY_CODE.get(d.data["code"])
        slug = check.slug if check is not None else d.data["code"]
        actions.append(types.CodeAction(
            title=f"Refactor with the model: {slug} ({d.data['code']})",
            kind=types.CodeActionKind.QuickFix,
            diagnostics=[d],
            data={"uri": uri, "version": version, "code": d.data["code"], "symbol": d.data.get("symbol", ""),
                  "message": d.message, "start": [d.range.start.line, d.range.start.character],
                  "end": [d.range.end.line, d.range.end.character]},
        ))
    return actions


def _line_offsets(text: str) -> list[int]:
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    return starts


def target_span(text: str, path: str, symbol: str, start_row: int, end_row: int) -> tuple[int, int]:
    """Code-point offsets of what to rewrite: the function or class named `symbol`, else whole lines."""
    lang = language_for_path(path)
    starts = _line_offsets(text)
    if lang and symbol:
        source = text.encode("utf-8")
        analysis = analyze_tree(path, lang, Languages().parser(lang).parse(source))
        units = [(f.qualname, f.start, f.end) for f in analysis.functions] + \
                [(c.name, c.start, c.end) for c in analysis.classes]
        for name, (srow, _), (erow, ecol) in units:
            if name == symbol:
                end_line = source.split(b"\n")[erow][:ecol].decode("utf-8", "replace")
                return starts[srow], starts[erow] + len(end_line)
    start_row = min(start_row, len(starts) - 1)
    end_row = min(max(end_row, start_row + 1), len(starts))
    end = starts[end_row] if end_row < len(starts) else len(text)
    return starts[start_row], end


def build_prompt(lang: str, message: str, code: str, check: str) -> str:
    return (
        f"### Refactoring request ({lang})\n"
        f"Problem found by loopls ({check}): {message}\n"
        "Rewrite the code below so that this problem goes away, keeping its behaviour and its "
        "public names. Answer with the complete replacement code only, in one fenced block.\n\n"
        f"```{lang}\n{code}\n```\n\n### Refactored code\n```{lang}\n"
    )


def quick_fix_prompt(text: str, path: str, data: dict) -> tuple[str, tuple[int, int]]:
    """The refactoring prompt for a quick fix's `data` and the span of `text` it rewrites.
    The quoted code is redacted, like every prompt."""
    start, end = target_span(text, path, data.get("symbol", ""), data["start"][0], data["end"][0])
    lang = language_for_path(path) or "text"
    return build_prompt(lang, data.get("message", ""), redact(text[start:end], path), data.get("code", "")), (start, end)


def extract_code(output: str) -> str:
    """The code in the model's answer: the prompt opened a fence, so up to the closing one
    (or the block of a fence the model opened again itself)."""
    fenced = _FENCE.search(output) if output.lstrip().startswith("```") else None
    text = fenced.group(1) if fenced else output.split("```", 1)[0]
    return text.rstrip()  # the span it replaces ends where the function's last line ends


def parses_cleanly(path: str, text: str) -> bool:
    lang = language_for_path(path)
    if lang is None:
        return True
    return not Languages().parser(lang).parse(text.encode("utf-8")).root_node.has_error


def _disable(action: types.CodeAction, reason: str) -> types.CodeAction:
    action.edit = None
    action.disabled = types.CodeActionDisabled(reason=reason)
    return action


def _offered_data(data: Any) -> dict:
    """The `data` that `quick_fixes` put on an action, checked: a client may send anything."""
    ok = (isinstance(data, dict) and isinstance(data.get("uri"), str)
          and all(isinstance(data.get(k, ""), str) for k in ("symbol", "message", "code"))
          and all(isinstance(data.get(k), list) and len(data[k]) == 2
                  and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in data[k])
                  for k in ("start", "end")))
    if not ok:
        raise JsonRpcInvalidParams("codeAction/resolve: data is not that of an action loopls offered")
    return data


async def resolve_quick_fix(ls: LanguageServer, host: Any, action: types.CodeAction) -> types.CodeAction:
    data = _offered_data(action.data)
    uri = data["uri"]
    doc = ls.workspace.text_documents.get(uri)
    path = host.path_of(uri) if uri else None
    if doc is None or path is None:
        return _disable(action, "the document is not open in this workspace")
    if data.get("version") is not None and doc.version != data["version"]:
        return _disable(action, "the document changed since this fix was offered; ask again")
    text = doc.source
    prompt, (start, end) = quick_fix_prompt(text, path, data)
    backend = await ls.models.ready()
    if backend is None:
        return _disable(action, f"the model is not available: {ls.models.error or 'not loaded'}")
    try:
        ids, params = _request(backend, prompt)
        guard_prompt(backend, ids)
        out = await ls.models.generate(ids, params, Priority.CODE_ACTION)
    except (BackendError, JsonRpcException, ModelUnavailable, OSError, ValueError, RuntimeError) as exc:
        return _disable(action, f"the model could not refactor this: {exc}")
    output = cut_at_stop(backend.tokenizer.decode(out.token_ids), params.stop)[0]
    replacement = extract_code(output)
    secret = inserted_secret(text, start, end, replacement, path)
    if secret is not None:
        log.warning("%s: dropped a rewrite that writes a secret-looking string (%s)", uri, secret.rule)
        return _disable(action, "the model's rewrite contained secret-looking text, so no edit is offered")
    edit = verified_edit(uri, doc.version, path, text, (start, end), replacement, ls.encoding)
    if edit is None:
        reason = ("the model's rewrite did not parse (ERROR nodes), so no edit is offered"
                  + (" — the untrained tiny-random model writes random text; set model.name to a real "
                     "checkpoint" if backend.info.untrained else ""))
        ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=f"loopls: {reason}"))
        return _disable(action, reason)
    action.edit = edit
    return action


def verified_edit(uri: str, version: int | None, path: str, text: str, span: tuple[int, int],
                  replacement: str, encoding: str = UTF16) -> types.WorkspaceEdit | None:
    """The edit replacing `span` (code-point offsets) of `text`, or None when the result would
    not parse without ERROR nodes (or the replacement is empty). The range is in `encoding`."""
    start, end = span
    if not replacement.strip() or not parses_cleanly(path, text[:start] + replacement + text[end:]):
        return None
    edit = types.TextEdit(range=LineIndex(text).range(start, end, encoding), new_text=replacement)
    return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(
        text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version), edits=[edit])])


def _request(backend: Backend, prompt: str) -> tuple[list[int], SamplingParams]:
    """Prompt ids and greedy sampling for the refactor prompt, cut to fit the model's context."""
    ids = backend.tokenizer.encode(prompt)
    bos = backend.tokenizer.special.bos
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    room = backend.context_limit - MAX_NEW_TOKENS - 1
    if len(ids) > room:
        ids = ids[:1] + ids[len(ids) - room + 1:]  # keep the instruction's tail and the code's end
    return ids, SamplingParams(max_tokens=MAX_NEW_TOKENS, temperature=0.0, stop=("\n```",))


def register_smell_code_actions(server: LanguageServer, host: Any) -> None:
    features = server.protocol.fm.features
    if types.TEXT_DOCUMENT_CODE_ACTION in features or types.CODE_ACTION_RESOLVE in features:
        # Another feature owns code actions: it can offer `quick_fixes` and `resolve_quick_fix` itself.
        log.warning("code actions already registered; smell quick fixes not registered separately")
        return

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[types.CodeActionKind.QuickFix], resolve_provider=True))
    async def code_action(ls: LanguageServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        if params.context.only and types.CodeActionKind.QuickFix not in params.context.only:
            return None
        uri = params.text_document.uri
        diagnostics = [d for d in params.context.diagnostics if d.source == "loopls"]
        if not diagnostics:
            diagnostics = [d for d in await host.document_diagnostics(uri)
                           if d.range.start.line <= params.range.end.line and d.range.end.line >= params.range.start.line]
        doc = ls.workspace.text_documents.get(uri)
        return quick_fixes(uri, doc.version if doc is not None else None, diagnostics) or None

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def code_action_resolve(ls: LanguageServer, action: types.CodeAction) -> types.CodeAction:
        return await resolve_quick_fix(ls, host, action)
