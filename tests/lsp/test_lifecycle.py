"""The LSP lifecycle on a real server process: before initialize, a second initialize, after
shutdown, exit codes, and requests whose files vanished."""

from __future__ import annotations

from pathlib import Path

import pytest

from raw_lsp import RawServer

TEXT = "def area(r):\n    return 3.14 * r * r\n\n\ndef perimeter(r):\n    \n"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "shapes.py").write_text(TEXT, encoding="utf-8")
    return tmp_path


@pytest.fixture()
def server():
    srv = RawServer()
    yield srv
    srv.close()
    assert "Traceback" not in srv.stderr()


def _open(srv: RawServer, uri: str, text: str = TEXT) -> None:
    srv.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}})


def _inline(srv: RawServer, uri: str, line: int = 5, character: int = 4) -> dict | None:
    return srv.request("textDocument/inlineCompletion", {
        "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
        "context": {"triggerKind": 1}}, 120)


def test_before_initialize_requests_get_server_not_initialized_and_notifications_are_dropped(
        server: RawServer, project: Path) -> None:
    uri = (project / "shapes.py").as_uri()
    reply = server.request("loopls/status")
    assert reply["error"]["code"] == -32002 and "initialize" in reply["error"]["message"]
    assert "data" not in reply["error"]  # no traceback
    _open(server, uri)  # dropped: the server is not initialized
    server.initialize(project, {"completion": {"maxTokens": 4}})
    reply = _inline(server, uri)
    assert reply["error"]["code"] == -32602 and "not open" in reply["error"]["message"]


def test_a_second_initialize_is_refused_and_changes_nothing(server: RawServer, project: Path) -> None:
    uri = (project / "shapes.py").as_uri()
    server.initialize(project, {"completion": {"maxTokens": 4}})
    _open(server, uri)
    reply = server.request("initialize", {"processId": None, "rootUri": "file:///etc", "capabilities": {},
                                          "initializationOptions": {"completion": {"maxTokens": 99}}})
    assert reply["error"]["code"] == -32600 and "already initialized" in reply["error"]["message"]
    status = server.request("loopls/status")["result"]
    assert status["options"]["completion"]["maxTokens"] == 4
    context = server.request("loopls/contextStatus")["result"]
    assert str(project) in str(context) and "/etc" not in str(context)
    reply = _inline(server, uri)  # the open document is still there
    assert "result" in reply, reply


def test_requests_after_shutdown_are_invalid_and_exit_then_gives_0(server: RawServer) -> None:
    server.initialize()
    assert server.request("shutdown")["result"] is None
    reply = server.request("loopls/status")
    assert reply["error"]["code"] == -32600 and "shutting down" in reply["error"]["message"]
    server.notify("exit")
    assert server.proc.wait(60) == 0


def test_no_diagnostics_are_pushed_after_shutdown(server: RawServer, project: Path) -> None:
    """A push-mode client (no pull capability) edits, then shuts down before the push's delay
    ends: the pending push is dropped, not run against a project thread that is gone."""
    uri = (project / "shapes.py").as_uri()
    server.initialize(project)
    _open(server, uri)
    server.drain(2.0)
    server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                             "contentChanges": [{"text": TEXT + "x = 1\n"}]})
    assert server.request("shutdown")["result"] is None
    pushed_before = len(server.notifications)
    server.drain(2.0)  # well past the push delay
    late = [m for m in server.notifications[pushed_before:] if m["method"] == "textDocument/publishDiagnostics"]
    assert late == []
    server.notify("exit")
    assert server.proc.wait(60) == 0


@pytest.mark.parametrize("initialize", [True, False])
def test_exit_without_shutdown_gives_1(server: RawServer, initialize: bool) -> None:
    if initialize:
        server.initialize()
    server.notify("exit")
    assert server.proc.wait(60) == 1


def test_status_without_params(server: RawServer) -> None:
    server.initialize()
    reply = server.request("loopls/status")  # no "params" member at all
    assert reply["result"]["version"], reply


def test_a_pull_for_a_deleted_file_answers_cleanly(server: RawServer, project: Path) -> None:
    server.initialize(project)
    gone = project / "shapes.py"
    gone.unlink()
    reply = server.request("textDocument/diagnostic", {"textDocument": {"uri": gone.as_uri()}}, 120)
    # an empty report, or RequestFailed naming the file should the handler meet the missing file
    if "error" in reply:
        assert reply["error"]["code"] == -32803 and str(gone) in reply["error"]["message"], reply
    else:
        assert reply["result"]["kind"] == "full" and reply["result"]["items"] == [], reply
    assert server.answers()


def test_invalid_params_are_named_without_a_traceback(server: RawServer, project: Path) -> None:
    server.initialize(project)
    reply = server.request("textDocument/inlineCompletion", {"textDocument": {"uri": 5}, "position": {}})
    error = reply["error"]
    assert error["code"] == -32602 and "textDocument/inlineCompletion" in error["message"]
    assert "Traceback" not in server.stderr()


def test_a_broken_model_config_is_reported_once_and_completions_answer_null(tmp_path: Path, project: Path) -> None:
    """A checkpoint whose config.json leaves no room for a prompt: one message naming the key
    and the file (not the editor's budget), and null completions, not an error per keystroke."""
    import json
    import subprocess
    import sys

    folder = tmp_path / "model"
    out = subprocess.run([sys.executable, "-m", "loopls.lsp", "model", "create-tiny", str(folder)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    config = folder / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"max_position_embeddings": 32}))
    srv = RawServer(args=("--model", str(folder)))
    try:
        srv.initialize(project)
        uri = (project / "shapes.py").as_uri()
        _open(srv, uri)
        for _ in range(2):  # typing on: no error reply, no second message
            reply = _inline(srv, uri)
            assert "error" not in reply and reply["result"] is None, reply
            reply = srv.request("textDocument/completion", {
                "textDocument": {"uri": uri}, "position": {"line": 5, "character": 4}}, 120)
            assert "error" not in reply and reply["result"]["items"] == [], reply
        shown = [n["params"]["message"] for n in srv.notifications if n["method"] == "window/showMessage"]
        assert len(shown) == 1, shown
        assert str(config) in shown[0] and "max_position_embeddings" in shown[0], shown
    finally:
        assert srv.close() == 0
    assert "Traceback" not in srv.stderr()
