"""The transport of a real server process, over stdio and TCP: each malformed frame of the
base protocol gets the JSON-RPC answer the specification asks for, and the server goes on."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from raw_lsp import SERVER, RawServer, frame


def status(msg_id) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "loopls/status", "params": None}).encode()


@pytest.fixture(scope="module")
def server():
    srv = RawServer()
    srv.initialize()
    yield srv
    assert srv.close() == 0
    assert "Traceback" not in srv.stderr()


CASES = {
    "lower-case header": (b"content-length: %d\r\n\r\n" % len(status(1)) + status(1), {1: None}),
    "LF-only header": (b"Content-Length: %d\n\n" % len(status(2)) + status(2), {2: None}),
    "over-size length": (b"Content-Length: 99999999999\r\n\r\n" + status(3) + frame(json.loads(status(4))),
                         {3: -32600, 4: None}),
    "no Content-Length": (b"Content-Type: x\r\n\r\n" + status(5) + frame(json.loads(status(6))), {5: -32700, 6: None}),
    "non-numeric length": (b"Content-Length: abc\r\n\r\n" + status(7) + frame(json.loads(status(8))),
                           {7: -32700, 8: None}),
    "body shorter": (b"Content-Length: %d\r\n\r\n" % (len(status(9)) + 30) + status(9) + frame(json.loads(status(10))),
                     {9: -32700, 10: None}),
    "body longer": (b"Content-Length: %d\r\n\r\n" % (len(status(11)) - 4) + status(11) + frame(json.loads(status(12))),
                    {11: -32700, 12: None}),
    "invalid JSON": (b"Content-Length: 5\r\n\r\n{abc}", {None: -32700}),
    "batch": (frame([json.loads(status(13))]), {None: -32600}),
    "no jsonrpc": (frame({"id": 14, "method": "loopls/status"}), {14: -32600}),
    "200,000-deep nesting": (b"Content-Length: 400000\r\n\r\n" + b"[" * 200_000 + b"]" * 200_000, {None: -32600}),
    "unknown method": (frame({"jsonrpc": "2.0", "id": 15, "method": "no/such"}), {15: -32601}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_frames_get_their_answer_and_the_server_goes_on(server: RawServer, case: str) -> None:
    data, expected = CASES[case]
    server.send_bytes(data)
    for msg_id, code in expected.items():
        reply = server.reply(msg_id, 60)
        assert reply is not None, f"{case}: no reply for id {msg_id}"
        if code is None:
            assert "result" in reply and reply["result"]["version"], reply
        else:
            assert reply["error"]["code"] == code, reply
            assert "Traceback" not in json.dumps(reply)
    assert server.answers()
    assert server.proc.poll() is None


def test_a_message_cut_short_is_answered_once_nothing_more_arrives(server: RawServer) -> None:
    body = status(20)
    started = time.monotonic()
    server.send_bytes(b"Content-Length: %d\r\n\r\n" % (len(body) + 100) + body)
    reply = server.reply(20, 30)
    assert reply is not None and reply["error"]["code"] == -32700 and "incomplete" in reply["error"]["message"]
    assert time.monotonic() - started >= 4  # the idle timeout (5 s), not at once
    assert server.answers()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_reads_the_same_hostile_framing_and_exits_with_1_without_shutdown() -> None:
    port = _free_port()
    proc = subprocess.Popen([*SERVER, "--tcp", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "the TCP server did not start"
                time.sleep(0.2)
        init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                           "params": {"processId": None, "rootUri": None, "capabilities": {}}}).encode()
        with conn:
            conn.sendall(b"content-length: %d\n\n" % len(init) + init + b"Content-Length: 6\r\n\r\n[1, 2]")
            conn.settimeout(60)
            data = b""
            while data.count(b'"id"') < 2:
                chunk = conn.recv(65536)
                assert chunk, data
                data += chunk
            assert b'"capabilities"' in data and b"-32600" in data
            conn.sendall(frame({"jsonrpc": "2.0", "method": "exit"}))
            assert proc.wait(60) == 1  # exit without shutdown
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert b"Traceback" not in proc.stderr.read()


def test_the_client_closing_stdin_ends_the_server() -> None:
    proc = subprocess.Popen(SERVER, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.stdin.write(b"Content-Length: 100\r\n\r\n{\"jsonrpc\"")  # and then the client is gone
    proc.stdin.close()
    assert proc.wait(60) == 1  # no shutdown came
    assert b"Traceback" not in proc.stderr.read()
