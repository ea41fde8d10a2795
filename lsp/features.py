"""Feature handlers: each gets the document, calls domain code, converts, returns."""

from __future__ import annotations

import time
from typing import Any

from lsprotocol import types

from loopls.engine.serving.standby import StandbyProcess

from .code_actions import register_code_actions
from .completion.acceptance import ACCEPT_COMMAND, DID_PARTIALLY_ACCEPT, DID_SHOW
from .completion.items import completion_items, inline_items
from .context_requests import register_context_features
from .diagnostics import register_smell_features
from .server import LooplsServer
from .status import STATUS

DOCUMENT_EVENTS = (
    types.TEXT_DOCUMENT_DID_OPEN, types.TEXT_DOCUMENT_DID_CHANGE, types.TEXT_DOCUMENT_DID_SAVE,
    types.TEXT_DOCUMENT_DID_CLOSE, types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
    types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS,
)


def create_server(model_override: str | None = None, standby: StandbyProcess | None = None) -> LooplsServer:
    server = LooplsServer(model_override, standby)

    @server.feature(types.INITIALIZE)
    def initialize(ls: LooplsServer, params: types.InitializeParams) -> None:
        ls.adopt_workspace()
        ls.apply_options(params.initialization_options)

    @server.feature(types.INITIALIZED)
    async def initialized(ls: LooplsServer, params: types.InitializedParams) -> None:
        ls.start_model()  # load now, not on the first keystroke
        ls.document_event(types.INITIALIZED, params)  # and index the workspace folders
        await ls.pull_configuration()

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: LooplsServer, params: None) -> None:
        ls.shutdown_engine()

    for method in DOCUMENT_EVENTS:  # one handler each, all through the server's one fan-out
        server.feature(method)(lambda ls, params, method=method: ls.document_event(method, params))

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: LooplsServer, params: types.DidChangeConfigurationParams) -> None:
        settings = params.settings
        if isinstance(settings, dict) and isinstance(settings.get("loopls"), dict):
            ls.apply_options(settings["loopls"])
        else:  # a client that only says "something changed" (settings null): ask for the section
            await ls.pull_configuration()

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: LooplsServer, params: types.InlineCompletionParams) -> types.InlineCompletionList | None:
        started = time.perf_counter()
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        request, index = ls.completion_request(params.text_document.uri, params.position, invoked)
        result = await ls.complete(request)
        if result is None:
            return None
        items = inline_items(index, request.offset, ls.encoding, result.suggestions, ls.acceptance)
        ls.note_latency(started)
        return items

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "("]))
    async def completion(ls: LooplsServer, params: types.CompletionParams) -> types.CompletionList:
        invoked = params.context is None or params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        request, index = ls.completion_request(params.text_document.uri, params.position, invoked)
        result = await ls.complete(request)
        untrained = ls.models.model_json().get("untrained", False)
        items = completion_items(index, request.offset, ls.encoding, result.suggestions, ls.acceptance,
                                 untrained) if result else []
        return types.CompletionList(is_incomplete=True, items=items)

    @server.command(ACCEPT_COMMAND)
    def accept_completion(ls: LooplsServer, args: Any) -> None:
        item = args[0] if isinstance(args, list) and args else args
        if isinstance(item, dict) and ls.acceptance.did_accept(item.get("id")):
            ls.status.changed()

    @server.feature(DID_SHOW)
    def did_show_completion(ls: LooplsServer, params: Any) -> None:
        ls.acceptance.did_show(_field(params, "id"))

    @server.feature(DID_PARTIALLY_ACCEPT)
    def did_partially_accept_completion(ls: LooplsServer, params: Any) -> None:
        ls.acceptance.did_partially_accept(_field(params, "id"), _field(params, "acceptedLength"))

    register_context_features(server, server.context)
    register_smell_features(server, server.smells)
    register_code_actions(server, server.refactors)

    @server.feature(STATUS)
    def status(ls: LooplsServer, params: Any = None) -> dict:
        return ls.status_json()

    return server


def _field(params: Any, name: str) -> Any:
    """A field of a custom notification's params (pygls hands them over as namedtuples)."""
    if isinstance(params, dict):
        return params.get(name)
    return getattr(params, name, None)
