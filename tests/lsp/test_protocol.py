"""The protocol's error boundary, in process: a request handler that fails answers with a
code that says whose failure it was, in one line, never with a traceback."""

from __future__ import annotations

import json

import pytest
from pygls.exceptions import JsonRpcInvalidParams

from loopls.lsp.features import create_server
from loopls.lsp.framing import Message
from loopls.lsp.transport import dispatch


class Collected:
    """A writer that keeps what the server sends (pygls' writer interface)."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass

    def replies(self) -> dict:
        out, rest = {}, self.data
        while rest:
            header, _, rest = rest.partition(b"\r\n\r\n")
            length = int(header.split(b"\r\n")[0].split(b":")[1])
            message = json.loads(rest[:length])
            rest = rest[length:]
            if "method" not in message:
                out[message.get("id")] = message
        return out


def send(protocol, message: dict) -> None:
    dispatch(protocol, Message(json.dumps(message).encode()))


@pytest.fixture()
def protocol():
    server = create_server()

    @server.feature("test/missingFile")
    def missing_file(ls, params) -> None:
        open("/no/such/dir/file.py")

    @server.feature("test/clientMistake")
    def client_mistake(ls, params) -> None:
        raise JsonRpcInvalidParams("position 9:9 is outside the document")

    @server.feature("test/bug")
    def bug(ls, params) -> None:
        return {}["missing"]

    writer = Collected()
    server.protocol.set_writer(writer)
    server.protocol.initialized = True  # as after an accepted initialize
    return server.protocol, writer


@pytest.mark.parametrize(("method", "code", "fragment"), [
    ("test/missingFile", -32803, "No such file or directory: /no/such/dir/file.py"),
    ("test/clientMistake", -32602, "outside the document"),
    ("test/bug", -32603, "internal error: KeyError: 'missing'"),
])
def test_handler_failures_answer_in_one_line(protocol, method: str, code: int, fragment: str) -> None:
    protocol, writer = protocol
    send(protocol, {"jsonrpc": "2.0", "id": 1, "method": method, "params": None})
    error = writer.replies()[1]["error"]
    assert error["code"] == code and fragment in error["message"]
    assert "\n" not in error["message"] and "data" not in error  # no traceback in the reply


def test_an_unhashable_cancel_id_is_ignored(protocol, caplog) -> None:
    protocol, writer = protocol
    send(protocol, {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": [1]}})
    send(protocol, {"jsonrpc": "2.0", "id": 2, "method": "loopls/status"})
    assert "result" in writer.replies()[2]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # nothing failed on the way
    assert any("cancelRequest with an id" in r.getMessage() for r in caplog.records)
