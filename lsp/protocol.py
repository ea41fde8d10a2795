"""The server's JSON-RPC protocol: pygls' LSP protocol plus replies to malformed requests.

pygls logs a request whose params do not deserialize and sends nothing back, which leaves
the client waiting forever. Here such a request gets an InvalidParams error naming the
method and the offending field, and the server goes on.
"""

from __future__ import annotations

import logging
from typing import Any

import cattrs
from cattrs.v import format_exception
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol

from .positions import PositionError

log = logging.getLogger(__name__)


class _Answered:
    """Stands in for a message that has already been answered with an error."""

    jsonrpc = None


class LooplsProtocol(LanguageServerProtocol):
    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if "id" not in data or "method" not in data:
                raise
            detail = _describe(exc.__cause__) or exc.message
            self._send_response(
                data["id"],
                None,
                JsonRpcInvalidParams(f"invalid params for {data['method']}: {detail}").to_response_error(),
            )
            return _Answered()

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _Answered):
            return
        super().handle_message(message)

    def _execute_handler(self, msg_id: Any, handler: Any, callback: Any, args: Any = None, kwargs: Any = None) -> None:
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        # pygls files the future of a notification's handler (didOpen, didChange, ... run as
        # generators) under a made-up id and never removes it: one entry more per keystroke,
        # for the life of the server. Requests remove theirs when they answer.
        future = self._request_futures.get(msg_id)
        if future is not None and callback == self._check_handler_result:
            future.add_done_callback(lambda _done: self._request_futures.pop(msg_id, None))

    def in_flight(self) -> dict[str, int]:
        """Requests being answered and requests to the client awaiting an answer (for the
        status' `tracked` counts: both must drain, whatever the traffic)."""
        return {"requests": len(self._request_futures), "result_types": len(self._result_types)}


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, format_exception=_format))[:500]
    return str(exc)[:500] if exc else ""


def _format(exc: BaseException, type_: type | None) -> str:
    # a position's own check says exactly what is wrong with it
    return str(exc) if isinstance(exc, PositionError) else format_exception(exc, type_)
