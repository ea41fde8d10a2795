"""The server's JSON-RPC protocol: pygls' LSP protocol plus the LSP lifecycle and an answer
to every request, including malformed ones.

- A request whose params do not deserialize gets InvalidParams naming the method and the
  offending field (pygls would log it and send nothing, leaving the client waiting).
- Before `initialize`, requests get ServerNotInitialized (-32002) and notifications other
  than `exit` are dropped; a second `initialize` is refused with InvalidRequest and changes
  nothing; after `shutdown`, requests get InvalidRequest.
- `exit` ends the message loop with exit code 0 after `shutdown`, else 1; the transport
  (`lsp/transport.py`) returns that code.
- A handler that fails on the file system (a file deleted or unreadable meanwhile) answers
  RequestFailed with the reason; other handler failures answer InternalError with a one-line
  message, the traceback going to the server's log only.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

import cattrs
from cattrs.v import format_exception
from lsprotocol import types
from lsprotocol.types import ResponseErrorMessage
from pygls.exceptions import FeatureRequestError, JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage
from pygls.protocol.language_server import lsp_method

from .framing import INVALID_REQUEST
from .jsonrpc import error_reply
from .positions import PositionError

log = logging.getLogger(__name__)


class _Answered:
    """Stands in for a message that has already been answered with an error."""

    jsonrpc = None


class LooplsProtocol(LanguageServerProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initialized = False  # an `initialize` request was accepted
        self.exit_code: int | None = None  # set by `exit`: the message loop ends

    def reply_error(self, msg_id: int | str | None, code: int, message: str) -> None:
        self._send_data(error_reply(msg_id, code, message))

    def structure_message(self, data: dict[str, Any]) -> Any:
        """The typed message for a checked JSON-RPC dict (`jsonrpc.decode`). pygls' own logs a
        traceback per malformed message and leaves a request without params unanswered."""
        method = data.get("method")
        if method is not None:
            fallback = JsonRPCRequestMessage if "id" in data else JsonRPCNotification
            message_type = self.get_message_type(method) or fallback
        elif "error" in data:
            message_type = ResponseErrorMessage
        else:
            message_type = self._result_types.pop(data.get("id"), None) or JsonRPCResponseMessage
        try:
            return self._converter.structure(data, message_type)
        except (cattrs.BaseValidationError, TypeError, ValueError, AttributeError, KeyError) as exc:
            detail = _describe(exc)
            if method is None or "id" not in data:
                raise JsonRpcInvalidParams(f"invalid params for {method or 'a response'}: {detail}") from None
            self.reply_error(data["id"], JsonRpcInvalidParams.CODE, f"invalid params for {method}: {detail}")
            return _Answered()

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _Answered):
            return
        method = getattr(message, "method", None)
        is_request = method is not None and hasattr(message, "id")
        refusal = self._refusal(method)
        if refusal is None:
            if method == types.INITIALIZE:
                self.initialized = True
            super().handle_message(message)
        elif is_request:
            log.warning("%s: %s", method, refusal[1])
            self.reply_error(message.id, *refusal)
        else:
            log.info("notification %s dropped: %s", method, refusal[1])

    def _refusal(self, method: str | None) -> tuple[int, str] | None:
        """Why the lifecycle refuses `method` now (error code and message), or None."""
        if method is None or method == types.EXIT:
            return None
        if self._shutdown:
            return INVALID_REQUEST, "the server is shutting down: only exit is accepted after shutdown"
        if not self.initialized and method != types.INITIALIZE:
            return types.ErrorCodes.ServerNotInitialized.value, "the server is not initialized: send initialize first"
        if self.initialized and method == types.INITIALIZE:
            return INVALID_REQUEST, "the server is already initialized; initialize may be sent only once"
        return None

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        if isinstance(msg_id, (int, str)) and not isinstance(msg_id, bool):
            super()._handle_cancel_notification(msg_id)
        else:
            log.warning("$/cancelRequest with an id that is no integer or string: %r", msg_id)

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> None:
        """LSP: exit code 0 after shutdown, 1 without it. The transport ends the process."""
        self.exit_code = 0 if self._shutdown else 1

    def _send_handler_result(self, future: Future[Any], *, msg_id: Any) -> None:
        if future.cancelled() or future.exception() is None:
            return super()._send_handler_result(future, msg_id=msg_id)
        self._request_futures.pop(msg_id, None)
        exc = future.exception()
        if isinstance(exc, JsonRpcException):  # the handler's own answer, e.g. InvalidParams
            log.warning("request %s: %s", msg_id, exc.message)
            self._send_response(msg_id, None, exc.to_response_error())
        elif isinstance(exc, OSError):  # the file system changed under the request
            message = f"request failed: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            log.warning("request %s: %s", msg_id, message)
            self.reply_error(msg_id, types.LSPErrorCodes.RequestFailed.value, message)
        else:
            log.error("request %s failed", msg_id, exc_info=(type(exc), exc, exc.__traceback__))
            self.reply_error(msg_id, types.ErrorCodes.InternalError.value, f"internal error: {type(exc).__name__}: {exc}"[:500])
            self._server._report_server_error(exc, FeatureRequestError)

    def _execute_handler(self, msg_id: Any, handler: Any, callback: Any, args: Any = None, kwargs: Any = None) -> None:
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        # pygls files the future of a notification's handler (didOpen, didChange, ... run as
        # generators) under a made-up id and never removes it: one entry more per keystroke,
        # for the life of the server. Requests remove theirs when they answer.
        future = self._request_futures.get(msg_id)
        if future is not None and callback == self._check_handler_result:
            future.add_done_callback(lambda _done: self._request_futures.pop(msg_id, None))

    @lsp_method(types.SHUTDOWN)
    def lsp_shutdown(self, *args: Any) -> Any:
        """pygls' shutdown, but cancelling over a copy of the pending futures: cancelling a
        notification's future runs the callback above, which removes it from the dict pygls
        iterates ("dictionary changed size during iteration")."""
        if (user_handler := self.fm.features.get(types.SHUTDOWN)) is not None:
            yield user_handler, args, None
        current_id = self.msg_id  # not this request's own future
        for msg_id, future in list(self._request_futures.items()):
            if msg_id != current_id and not future.done():
                future.cancel()
        self._shutdown = True
        return None

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
