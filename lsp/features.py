"""Feature handlers: each gets the document, calls domain code, converts, returns."""

from __future__ import annotations

import re

from lsprotocol import types

from .context_features import register_context_features
from .diagnostics import register_smell_features
from .positions import lsp_range, offset_at
from .server import LooplsServer

_WORD_TAIL = re.compile(r"[A-Za-z0-9_$]*$")


def create_server(model_override: str | None = None) -> LooplsServer:
    server = LooplsServer(model_override)

    @server.feature(types.INITIALIZE)
    def initialize(ls: LooplsServer, params: types.InitializeParams) -> None:
        ls.apply_options(params.initialization_options)

    @server.feature(types.INITIALIZED)
    def initialized(ls: LooplsServer, params: types.InitializedParams) -> None:
        ls.completer()  # start loading the model now, not on the first keystroke

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: LooplsServer, params: None) -> None:
        ls.shutdown_engine()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: LooplsServer, params: types.DidChangeConfigurationParams) -> None:
        settings = params.settings
        if isinstance(settings, dict) and "loopls" in settings:
            ls.apply_options(settings["loopls"])

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: LooplsServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        texts = await ls.complete_at(params.text_document.uri, params.position)
        if not texts:
            return None
        at = lsp_range(params.position)
        return types.InlineCompletionList(
            items=[types.InlineCompletionItem(insert_text=t, range=at) for t in texts]
        )

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "("])
    )
    async def completion(ls: LooplsServer, params: types.CompletionParams) -> types.CompletionList:
        texts = await ls.complete_at(params.text_document.uri, params.position)
        return types.CompletionList(is_incomplete=True, items=completion_items(ls, params, texts))

    register_context_features(server)
    register_smell_features(server)

    @server.feature("loopls/status")
    def status(ls: LooplsServer, params: object) -> dict:
        return ls.status()

    return server


def completion_items(ls: LooplsServer, params: types.CompletionParams, texts: list[str]) -> list[types.CompletionItem]:
    """Completion items that replace the word being typed, so that clients filter them in."""
    text = ls.document_text(params.text_document.uri)
    offset = offset_at(text, params.position)
    line_start = text.rfind("\n", 0, offset) + 1
    word = _WORD_TAIL.search(text[line_start:offset]).group(0)
    start = types.Position(line=params.position.line, character=params.position.character - len(word))
    untrained = ls.status()["model"].get("untrained", False)
    items = []
    for t in texts:
        first = t.split("\n", 1)[0]
        items.append(types.CompletionItem(
            label=(word + first).strip() or "⏎ " + t.strip().split("\n", 1)[0],
            kind=types.CompletionItemKind.Text,
            detail="loopls (untrained model: random text)" if untrained else "loopls",
            filter_text=word + t,
            text_edit=types.TextEdit(range=lsp_range(start, params.position), new_text=word + t),
            insert_text_format=types.InsertTextFormat.PlainText,
        ))
    return items
