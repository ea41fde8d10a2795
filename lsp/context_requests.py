"""The context requests over LSP: `loopls/contextStatus` and `loopls/explainContext` (what a
completion prompt at a position would hold, and why), answered by the `ContextHost`."""

from __future__ import annotations

from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from .context_features import ContextHost
from .positions import PositionError, check_position

EXPLAIN_CONTEXT = "loopls/explainContext"
CONTEXT_STATUS = "loopls/contextStatus"


def _parse_explain(params: Any) -> tuple[str, types.Position, int | None]:
    try:
        get = params.get if isinstance(params, dict) else lambda k: getattr(params, k, None)
        doc, pos, budget = get("textDocument"), get("position"), get("budget")
        uri = doc["uri"] if isinstance(doc, dict) else doc.uri
        if not isinstance(uri, str):
            raise TypeError("uri")
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


def register_context_features(server: LanguageServer, host: ContextHost) -> None:
    @server.feature(CONTEXT_STATUS)
    def context_status(ls: LanguageServer, params: Any) -> dict:
        return host.status()

    @server.feature(EXPLAIN_CONTEXT)
    async def explain_context(ls: LanguageServer, params: Any) -> dict:
        uri, position, budget = _parse_explain(params)
        return await host.explain(uri, position, budget or ls.options.completion.context_tokens)
