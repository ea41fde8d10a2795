"""Helpers for the code-action tests: a real client with the capabilities VS Code and Neovim
announce, and applying a resolved WorkspaceEdit to a file the way an editor does."""

from __future__ import annotations

from pathlib import Path

import git
from lsprotocol import types
from pytest_lsp import LanguageClient

EDITOR_CAPABILITIES = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(
        code_action=types.CodeActionClientCapabilities(
            code_action_literal_support=types.ClientCodeActionLiteralOptions(
                code_action_kind=types.ClientCodeActionKindOptions(value_set=["", "quickfix", "refactor", "source"])),
            resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]),
            disabled_support=True, data_support=True),
        diagnostic=types.DiagnosticClientCapabilities(related_document_support=True)),
    workspace=types.WorkspaceClientCapabilities(workspace_edit=types.WorkspaceEditClientCapabilities(
        document_changes=True, change_annotation_support=types.ChangeAnnotationsSupportOptions(groups_on_label=True))),
)


def make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(root)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    repo.index.add(list(files))
    repo.index.commit("init", author=git.Actor("dev", "dev@example.com"))
    return root


def open_document(client: LanguageClient, path: Path, language: str, version: int = 1) -> str:
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id=language, version=version, text=path.read_text(encoding="utf-8"))))
    return uri


def position(text: str, offset: int) -> types.Position:
    line = text.count("\n", 0, offset)
    column = offset - (text.rfind("\n", 0, offset) + 1)
    return types.Position(line=line, character=len(text[offset - column:offset].encode("utf-16-le")) // 2)


def selection(text: str, needle: str, occurrence: int = 0, cursor: bool = False) -> types.Range:
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(needle, start + 1)
    end = start if cursor else start + len(needle)
    return types.Range(start=position(text, start), end=position(text, end))


async def code_actions(client: LanguageClient, uri: str, rng: types.Range, only: list[str] | None = None,
                       trigger: types.CodeActionTriggerKind = types.CodeActionTriggerKind.Invoked,
                       ) -> list[types.CodeAction]:
    result = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=rng,
        context=types.CodeActionContext(diagnostics=[], only=only, trigger_kind=trigger)))
    return [a for a in result or [] if isinstance(a, types.CodeAction)]


def apply_workspace_edit(text: str, edit: types.WorkspaceEdit) -> str:
    """The document after `edit`, applied as an editor applies it (all ranges against the
    text before the edit)."""
    (doc_edit,) = edit.document_changes
    offsets = []
    for e in doc_edit.edits:
        offsets.append((_offset(text, e.range.start), _offset(text, e.range.end), e.new_text))
    for start, end, new in sorted(offsets, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _offset(text: str, pos: types.Position) -> int:
    lines = text.split("\n")
    before = sum(len(line) + 1 for line in lines[:pos.line])
    line = lines[pos.line] if pos.line < len(lines) else ""
    units, i = 0, 0
    while i < len(line) and units < pos.character:
        units += 2 if ord(line[i]) > 0xFFFF else 1
        i += 1
    return before + i
