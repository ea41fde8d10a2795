"""Refactors as LSP code actions: edit records (code-point offsets) to `WorkspaceEdit`s with
change annotations, the `data` an action carries to `codeAction/resolve`, and the check of
that data when it comes back (a client may send anything)."""

from __future__ import annotations

from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from loopls.context.refactor import Refactoring

from .positions import UTF16, LineIndex

ANNOTATION = "loopls.refactor"


class ClientSupport:
    """What the client said it can do with code actions and workspace edits."""

    def __init__(self, caps: types.ClientCapabilities | None) -> None:
        text = caps.text_document if caps is not None else None
        action = text.code_action if text is not None else None
        workspace = caps.workspace if caps is not None else None
        edit = workspace.workspace_edit if workspace is not None else None
        resolve = action.resolve_support if action is not None else None
        self.lazy_edits = bool(resolve and "edit" in (resolve.properties or []))
        self.disabled = bool(action and action.disabled_support)
        self.document_changes = bool(edit and edit.document_changes)
        self.annotations = bool(edit and edit.change_annotation_support is not None and self.document_changes)


def workspace_edit(uri: str, version: int | None, text: str, refactoring: Refactoring, support: ClientSupport,
                   encoding: str = UTF16, needs_confirmation: bool = False) -> types.WorkspaceEdit:
    """The edits of `refactoring` on the document `text` (its version `version`), in the
    position encoding negotiated with the client."""
    annotated = support.annotations
    index = LineIndex(text)
    edits: list[types.TextEdit | types.AnnotatedTextEdit] = []
    for e in refactoring.edits:
        rng = index.range(e.start, e.end, encoding)
        edits.append(types.AnnotatedTextEdit(range=rng, new_text=e.text, annotation_id=ANNOTATION) if annotated
                     else types.TextEdit(range=rng, new_text=e.text))
    if not support.document_changes:
        return types.WorkspaceEdit(changes={uri: edits})
    annotations = None
    if annotated:
        description = "; ".join(refactoring.notes) or None
        annotations = {ANNOTATION: types.ChangeAnnotation(label=refactoring.title,
                                                          needs_confirmation=needs_confirmation,
                                                          description=description)}
    return types.WorkspaceEdit(
        document_changes=[types.TextDocumentEdit(
            text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version), edits=edits)],
        change_annotations=annotations)


def action_data(uri: str, version: int | None, refactoring_kind: str, title: str, rng: types.Range,
                **extra: Any) -> dict:
    return {"uri": uri, "version": version, "kind": refactoring_kind, "title": title,
            "start": [rng.start.line, rng.start.character], "end": [rng.end.line, rng.end.character], **extra}


def checked_data(data: Any) -> dict:
    """The `data` loopls put on an action, checked; anything else is InvalidParams."""
    def position(value: Any) -> bool:
        return isinstance(value, list) and len(value) == 2 and all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)

    ok = (isinstance(data, dict) and isinstance(data.get("uri"), str) and isinstance(data.get("kind"), str)
          and isinstance(data.get("title"), str) and position(data.get("start")) and position(data.get("end"))
          and (data.get("version") is None or (isinstance(data["version"], int)
                                               and not isinstance(data["version"], bool)))
          and all(isinstance(data.get(k, ""), str) for k in ("code", "symbol", "message", "slug"))
          and all(isinstance(data.get(k, 0), int) for k in ("startRow", "endRow")))
    if not ok:
        raise JsonRpcInvalidParams("codeAction/resolve: data is not that of an action loopls offered")
    return data


def data_range(data: dict) -> types.Range:
    return types.Range(start=types.Position(line=data["start"][0], character=data["start"][1]),
                       end=types.Position(line=data["end"][0], character=data["end"][1]))
