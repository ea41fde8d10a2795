"""The language server's engine on a CPU runs in a process of its own (its torch work never
waits for the server's Python threads): driven over stdio by a real client, the server's
completions are those `loopls complete` decodes with the engine on a thread of its own
process, and a killed engine process fails the request it held with one clear message, is
restarted, and the next completion works. A server that ends while its engine process is
starting (shutdown and exit, exit alone, its client gone) leaves no process and no traceback.
The engine process is started before the client's `initialize` (its imports overlap the
server's start) and the model loads in it; a model that cannot load, or a server that ends
(or is killed) before `initialize`, leaves no engine process.
The server answers `initialize` without torch in its process (only the engine process imports it).

The model is a scripted checkpoint, whose greedy text does not hang on the last bits of a
logit: the server warms prompts up in other chunks than `loopls complete` computes them, and
on another CPU a near-tie of the default model could go either way. That the process engine
computes the thread engine's very tokens, logits and cache hits for the same requests is
tests/engine/test_engine_process.py's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import make_test_lsp_client
from lsp_session import SERVER, inline_params, insert, open_document, session, status, wait_for_state
from marked_processes import gone_within
from raw_lsp import RawServer
from scripted_model import create_scripted

SOURCE = '''import math


def circle_area(radius):
    return math.pi * radius ** 2


def circle_perimeter(radius):
    return 2 * math.pi * 
'''


def engine_processes(server_pid: int) -> list[int]:
    """The server's children that multiprocessing spawned to run code (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if parent == server_pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


@pytest.mark.timeout(300)
async def test_the_engine_process_completes_what_the_engine_thread_of_loopls_complete_does(tmp_path) -> None:
    source = tmp_path / "outside" / "shapes.py"  # outside every workspace folder: the buffer alone
    source.parent.mkdir()
    source.write_text(SOURCE, encoding="utf-8")
    line, character = 8, len("    return 2 * math.pi * ")
    model = create_scripted(tmp_path / "model", "radius")
    cli = subprocess.run([sys.executable, "-m", "loopls.lsp", "complete", f"{source}:{line + 1}:{character + 1}",
                          "--model", str(model), "--device", "cpu", "--max-tokens", "16", "--json"],
                         capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    assert expected["items"] and expected["generatedTokens"] > 0
    workspace = tmp_path / "ws"
    workspace.mkdir()
    async with session(workspace, {"model": {"name": str(model), "device": "cpu"},
                                   "completion": {"maxTokens": 16}}) as client:
        ready = await wait_for_state(client, "ready")
        assert ready["model"]["device"] == "cpu"
        (engine,) = engine_processes(client._server.pid)
        open_document(client, source.as_uri(), SOURCE)
        result = await client.text_document_inline_completion_async(inline_params(source.as_uri(), line, character))
        assert result is not None and [item.insert_text for item in result.items] == \
            [item["insertText"] for item in expected["items"]] == ["radius"]
        current = await status(client)
        assert current["stats"]["last_generated_tokens"] == expected["generatedTokens"]
        assert current["engine"]["tensor_parallel_size"] == 1 and current["engine"]["worker_restarts"] == 0
        assert engine_processes(client._server.pid) == [engine]


@pytest.mark.timeout(300)
async def test_a_killed_engine_process_gives_one_error_and_the_next_completion_works(tmp_path) -> None:
    model = create_scripted(tmp_path / "model", "compute(x)")
    source = tmp_path / "app.py"
    # three places: each request generates (the same place again would be a suggestion cached)
    source.write_text("def f(x):\n    return \n\ndef g(x):\n    return \n\ndef h(x):\n    return \n", encoding="utf-8")
    async with session(tmp_path, {"model": {"name": str(model), "device": "cpu"}}) as client:
        await wait_for_state(client, "ready")
        uri = source.as_uri()
        open_document(client, uri, source.read_text())
        first = await client.text_document_inline_completion_async(inline_params(uri, 1, 11, invoked=True))
        assert [item.insert_text for item in first.items] == ["compute(x)"]
        # the next line's prompt is warm: the request after the edit goes straight to generating
        warm = await client.text_document_inline_completion_async(inline_params(uri, 4, 11, invoked=True))
        assert [item.insert_text for item in warm.items] == ["compute(x)"]
        insert(client, uri, 2, 4, 11, "y")
        (engine,) = engine_processes(client._server.pid)

        os.kill(engine, signal.SIGSTOP)  # holds the next request in the engine until it is killed
        try:
            request = asyncio.ensure_future(client.text_document_inline_completion_async(inline_params(uri, 4, 12, True)))
            deadline = time.monotonic() + 60
            while (await status(client))["stats"]["active_generations"] < 1:
                assert time.monotonic() < deadline, "the request never reached the engine"
                await asyncio.sleep(0.05)
        finally:
            os.kill(engine, signal.SIGKILL)
        with pytest.raises(Exception, match=rf"engine failed: the engine process \(pid {engine}\) was killed by "
                                            r"signal 9 \(SIGKILL.*\); the engine process was restarted"):
            await request

        after = await client.text_document_inline_completion_async(inline_params(uri, 7, 11, invoked=True))  # cold
        assert [item.insert_text for item in after.items] == ["compute(x)"]
        current = await status(client)
        assert current["engine"]["worker_restarts"] == 1 and current["state"] != "error"
        (restarted,) = engine_processes(client._server.pid)
        assert restarted != engine
        errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
        assert len(errors) == 1 and "completions are failing" in errors[0] and f"pid {engine}" in errors[0]
        assert any("answers again" in m.message for m in client.log_messages)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("ending", ["shutdown and exit", "exit", "stdin closed"])
@pytest.mark.parametrize("moment", ["spawned", "loading"])
def test_a_server_ending_while_its_engine_process_starts_leaves_no_process_and_no_traceback(
        tmp_path, ending: str, moment: str) -> None:
    mark = f"exit-{uuid.uuid4().hex}"
    server = RawServer(env=dict(os.environ, LOOPLS_TEST_MARK=mark))
    try:
        server.initialize(tmp_path)  # loads the default model
        deadline = time.monotonic() + 120
        while not (engine := engine_processes(server.proc.pid)):
            assert time.monotonic() < deadline, "no engine process was started"
            time.sleep(0.002)
        if moment == "loading":
            time.sleep(0.5)
        if ending == "shutdown and exit":
            assert server.request("shutdown", None, 60)["result"] is None
        if ending == "stdin closed":
            server.proc.stdin.close()
        else:
            server.notify("exit")
        assert server.proc.wait(60) == (0 if ending == "shutdown and exit" else 1)
        left_over = gone_within(mark, 3.0)  # its resource tracker may still be ending
        assert gone_within(mark, 120.0), "a process the server started never ended"
        text = server.stderr()  # also what an engine process left behind wrote
        assert "Traceback" not in text, text
        assert left_over, f"the engine process {engine} outlived the server"
    finally:
        server.close()


def _wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.01)
    return found


def _model_state(server: RawServer, *states: str) -> dict:
    deadline = time.monotonic() + 180
    while True:
        reply = server.request("loopls/status", None, 60)
        assert reply is not None and "result" in reply, reply
        if reply["result"]["state"] in states:
            return reply["result"]
        assert time.monotonic() < deadline, f"the model never reached {states}: {reply['result']['state']}"
        time.sleep(0.05)


@pytest.mark.timeout(300)
def test_the_engine_process_starts_before_initialize_and_the_model_runs_in_it(tmp_path) -> None:
    model = create_scripted(tmp_path / "model", "radius")
    source = tmp_path / "shapes.py"
    source.write_text(SOURCE, encoding="utf-8")
    server = RawServer(cwd=tmp_path)
    try:
        # before the client has said anything: its imports overlap the server's own start
        (early,) = _wait_for(lambda: engine_processes(server.proc.pid), 60, "no engine process before initialize")
        server.initialize(tmp_path, {"model": {"name": str(model), "device": "cpu"}, "completion": {"maxTokens": 16}})
        ready = _model_state(server, "ready", "error")
        assert ready["state"] == "ready", ready
        assert engine_processes(server.proc.pid) == [early]  # the model loaded in it, no other was spawned
        server.notify("textDocument/didOpen", {"textDocument": {"uri": source.as_uri(), "languageId": "python",
                                                                "version": 1, "text": SOURCE}})
        reply = server.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": source.as_uri()}, "position": {"line": 8, "character": len("    return 2 * math.pi * ")},
            "context": {"triggerKind": 1}}, 120)
        assert reply is not None and [item["insertText"] for item in reply["result"]["items"]] == ["radius"], reply
        assert engine_processes(server.proc.pid) == [early]
    finally:
        code = server.close()
    assert code == 0
    assert "Traceback" not in server.stderr(), server.stderr()


@pytest.mark.timeout(300)
def test_an_engine_process_started_ahead_ends_when_the_model_cannot_load(tmp_path) -> None:
    mark = f"unused-{uuid.uuid4().hex}"
    server = RawServer(cwd=tmp_path, env=dict(os.environ, LOOPLS_TEST_MARK=mark))
    try:
        (early,) = _wait_for(lambda: engine_processes(server.proc.pid), 60, "no engine process before initialize")
        server.initialize(tmp_path, {"model": {"name": str(tmp_path / "no-such-model"), "device": "cpu"}})
        failed = _model_state(server, "ready", "error")
        assert failed["state"] == "error" and "no such checkpoint folder" in failed["message"], failed
        _wait_for(lambda: not engine_processes(server.proc.pid), 30, f"engine process {early} outlived the failed load")
        assert server.answers()
    finally:
        code = server.close()
    assert code == 0
    assert gone_within(mark, 30.0)
    assert "Traceback" not in server.stderr(), server.stderr()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("ending", ["exit", "stdin closed", "killed"])
def test_a_server_ending_before_initialize_leaves_no_engine_process(tmp_path, ending: str) -> None:
    mark = f"early-{uuid.uuid4().hex}"
    server = RawServer(cwd=tmp_path, env=dict(os.environ, LOOPLS_TEST_MARK=mark))
    try:
        (early,) = _wait_for(lambda: engine_processes(server.proc.pid), 60, "no engine process before initialize")
        if ending == "exit":
            server.notify("exit")
        elif ending == "stdin closed":
            server.proc.stdin.close()
        else:
            server.proc.send_signal(signal.SIGKILL)
        assert server.proc.wait(60) == (-signal.SIGKILL if ending == "killed" else 1)
        left_over = gone_within(mark, 3.0)  # its resource tracker may still be ending
        assert gone_within(mark, 120.0), "a process the server started never ended"
        text = server.stderr()
        assert "Traceback" not in text and "Error" not in text, text
        assert left_over, f"the engine process {early} outlived the server"
    finally:
        server.close()


def maps_torch(pid: int) -> bool:
    """Whether the process `pid` has torch's libraries mapped (has imported torch)."""
    return "/libtorch" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.timeout(300)
async def test_the_server_answers_initialize_without_torch_which_only_its_engine_process_imports(tmp_path) -> None:
    client = make_test_lsp_client()
    await client.start_io(*SERVER)
    try:
        server = client._server.pid
        # initialize_session without its `initialized` (which starts the model load): what is
        # checked is the server as it answers `initialize`
        client.capabilities = types.ClientCapabilities()
        result = await client.initialize_async(types.InitializeParams(
            capabilities=client.capabilities, process_id=os.getpid(), root_uri=tmp_path.as_uri()))
        assert result.server_info.name == "loopls"
        assert not maps_torch(server), "the server imported torch before it answered initialize"
        (engine,) = engine_processes(server)
        # the check sees torch where it is: the engine process imports it at once
        _wait_for(lambda: maps_torch(engine), 120, "the engine process never imported torch")
        assert not maps_torch(server)
    finally:
        await client.shutdown_session()
        await client.stop()
