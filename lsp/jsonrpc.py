"""JSON-RPC 2.0 messages as LSP uses them: decoding a body, checking the envelope, reading the
id of a broken message, and the error replies for messages that cannot be handled.

Replies follow the JSON-RPC specification: invalid JSON is a parse error (-32700), a JSON
value that is no single request, notification or response is an invalid request (-32600),
and the reply carries the request's id when it can be read, else `null`. LSP sends one
message per frame, so a batch (an array) is an invalid request as a whole.
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring
from typing import Any

from .framing import INVALID_REQUEST, PARSE_ERROR

MAX_DEPTH = 100  # LSP messages nest about ten levels; this only stops hostile nesting
_LONE_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ID_SCAN_CHARS = 4096


class RpcError(Exception):
    """A message that cannot be handled: `reply` says whether to answer it (never a response)."""

    def __init__(self, code: int, message: str, msg_id: int | str | None = None, reply: bool = True) -> None:
        super().__init__(message)
        self.code, self.message, self.id, self.reply = code, message, msg_id, reply


def decode(body: bytes) -> dict[str, Any]:
    """The message in `body`, checked as a JSON-RPC 2.0 request, notification or response;
    raises RpcError. A request or notification without params gets `params: null`."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise RpcError(INVALID_REQUEST, f"message nested deeper than {MAX_DEPTH} levels", read_id(body)) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise RpcError(PARSE_ERROR, f"invalid JSON: {_one_line(exc)}", read_id(body)) from None
    if isinstance(data, list):
        raise RpcError(INVALID_REQUEST, "batch messages are not supported: LSP sends one message per frame")
    if not isinstance(data, dict):
        raise RpcError(INVALID_REQUEST, f"a message must be a JSON object, not {type(data).__name__}")
    msg_id = data.get("id")
    valid_id = _valid_id(msg_id)
    if _too_deep(data):
        raise RpcError(INVALID_REQUEST, f"message nested deeper than {MAX_DEPTH} levels", msg_id if valid_id else None)
    if _LONE_SURROGATE_ESCAPE.search(body):
        # A lone UTF-16 surrogate is no character and cannot be encoded; U+FFFD takes its
        # place and, one UTF-16 unit like it, keeps every position the client sends valid.
        data = _replace_surrogates(data)
    _check_envelope(data, msg_id if valid_id else None, valid_id)
    return data


def _check_envelope(data: dict[str, Any], reply_id: int | str | None, valid_id: bool) -> None:
    is_response = "method" not in data and ("result" in data or "error" in data)
    if data.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'the "jsonrpc" member must be "2.0"', reply_id, reply=not is_response)
    if is_response:
        if not valid_id and data.get("id") is not None:
            raise RpcError(INVALID_REQUEST, "a response id must be an integer or a string", reply=False)
        return
    if "method" not in data:
        raise RpcError(INVALID_REQUEST, "the message has no method and is no response", reply_id)
    if not isinstance(data["method"], str):
        raise RpcError(INVALID_REQUEST, "method must be a string", reply_id)
    if "id" in data and not valid_id:
        raise RpcError(INVALID_REQUEST, "a request id must be an integer or a string")
    data.setdefault("params", None)


def read_id(data: bytes) -> int | str | None:
    """The top-level `id` of a message that may be cut off or invalid further on, or None."""
    text = data[:_ID_SCAN_CHARS * 4].decode("utf-8", "replace")[:_ID_SCAN_CHARS]
    decoder = json.JSONDecoder()
    try:
        i = _skip_space(text, 0)
        if text[i] != "{":
            return None
        i += 1
        while True:
            i = _skip_space(text, i)
            if text[i] != '"':
                return None
            key, i = scanstring(text, i + 1)
            i = _skip_space(text, i)
            if text[i] != ":":
                return None
            value, i = decoder.raw_decode(text, _skip_space(text, i + 1))
            if key == "id":
                return value if _valid_id(value) else None
            i = _skip_space(text, i)
            if text[i] != ",":
                return None
            i += 1
    except (ValueError, IndexError, RecursionError):  # cut off or invalid before an id
        return None


def error_reply(msg_id: int | str | None, code: int, message: str) -> dict[str, Any]:
    """A JSON-RPC error response; `"id": null` is written out, as the specification asks."""
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


def _valid_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _too_deep(data: Any) -> bool:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))
    return False


def _replace_surrogates(value: Any) -> Any:
    """`value` with lone surrogates in its strings replaced (depth is bounded by MAX_DEPTH)."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _one_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
