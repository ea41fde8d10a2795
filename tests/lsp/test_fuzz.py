"""Property-based fuzzing against the real server and the real command line, with a fixed
budget (derandomized, bounded examples) so that CI runs it the same way every time.

- transport: random hostile byte streams (headers, bodies, JSON, over-size lengths, split
  anywhere); every reply is a client error or a result, and a well-formed request afterwards
  is answered;
- params: the params of every request and notification the server registers, each with one
  part made hostile (wrong types, out-of-range numbers, odd URIs, missing or extra keys):
  never -32603 or a hang, never a traceback in the log;
- CLI: random bad command lines: exit 0, 1 or 2, an error is one line, never a traceback.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile import hostile_argv, hostile_stream, mutate, notification_templates, request_templates
from raw_lsp import CLIENT_ERROR_CODES, RawServer, frame

FUZZ = settings(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SOURCE = "def f(x):\n    return x\n\n\ndef g(y):\n    if y:\n        return 1\n    return 2\n"


def _check_replies(replies: list[dict]) -> None:
    for reply in replies:
        if "error" in reply:
            assert reply["error"]["code"] in CLIENT_ERROR_CODES, reply
            assert "Traceback" not in str(reply)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "a.py").write_text(SOURCE, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def server(project: Path):
    srv = RawServer(cwd=project)
    srv.initialize(project, {"completion": {"maxTokens": 4}})
    srv.notify("textDocument/didOpen", {"textDocument": {
        "uri": (project / "a.py").as_uri(), "languageId": "python", "version": 1, "text": SOURCE}})
    yield srv
    code = srv.close()
    log = srv.stderr()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[log.index("Traceback") - 500:][:4000]


@settings(FUZZ, max_examples=60)
@given(st.randoms(use_true_random=False))
def test_hostile_streams_never_stop_the_server(server: RawServer, rng: random.Random) -> None:
    server.send_bytes(hostile_stream(rng))
    assert server.answers(), "no answer to a well-formed request after hostile input"
    _check_replies(server.drain())
    assert server.proc.poll() is None


@settings(FUZZ, max_examples=150)
@given(st.randoms(use_true_random=False))
def test_hostile_params_get_client_errors_never_internal_ones(server: RawServer, project: Path,
                                                             rng: random.Random) -> None:
    uri = rng.choice([(project / "a.py").as_uri(), (project / "missing.py").as_uri(), "untitled:Untitled-1"])
    requests, notifications = request_templates(uri), notification_templates(uri)
    if rng.random() < 0.25:
        method = rng.choice(sorted(notifications))
        server.notify(method, mutate(rng, notifications[method]))
    else:
        method = rng.choice(sorted(requests))
        msg_id = server.new_id()
        server.send_bytes(frame({"jsonrpc": "2.0", "id": msg_id, "method": method,
                                 "params": mutate(rng, requests[method] or {})}))
        reply = server.reply(msg_id, 20)
        if reply is None:  # a long poll (workspace/diagnostic) or a slow model: cancel it
            server.notify("$/cancelRequest", {"id": msg_id})
            reply = server.reply(msg_id, 30)
        assert reply is not None, f"{method}: no reply, even after $/cancelRequest"
        _check_replies([reply])
    assert server.answers()


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-fuzz")
    source = root / "calc.py"
    source.write_text(SOURCE, encoding="utf-8")
    (root / "blob.py").write_bytes(b"\x00\x01binary")
    (root / "latin.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    os.mkfifo(root / "pipe.py")
    return {"source": source, "binary": root / "blob.py", "latin": root / "latin.py", "fifo": root / "pipe.py",
            "missing": root / "missing.py", "folder": root}


# Each example is a fresh interpreter that imports torch (about 5 s on 2 idle cores, more on
# a busy machine): few examples, and room for a loaded CI runner.
@pytest.mark.timeout(900)
@settings(FUZZ, max_examples=15)
@given(st.randoms(use_true_random=False))
def test_hostile_command_lines_fail_in_one_line(cli_files: dict[str, Path], rng: random.Random) -> None:
    argv = hostile_argv(rng, cli_files)
    out = subprocess.run([sys.executable, "-m", "loopls.lsp", *argv], capture_output=True, text=True,
                         timeout=300, stdin=subprocess.DEVNULL)
    assert out.returncode in (0, 1, 2), (argv, out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr, (argv, out.stderr)
    if out.returncode == 2:
        assert len(out.stderr.strip().splitlines()) == 1, (argv, out.stderr)
