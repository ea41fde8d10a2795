"""The language server with the `openai` backend, driven by a real LSP client (pytest-lsp),
against a real `loopls serve` and a real vLLM server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from backend_servers import ServerProcess

SERVER = [sys.executable, "-m", "loopls.lsp", "lsp"]
URI = "file:///tmp/loopls-remote/example.py"
TEXT = "import math\n\ndef area(radius):\n    return math.pi * radius ** 2\n\ndef perimeter(radius):\n    \n"
# The first run installs vLLM (several minutes) inside a fixture of the first test needing it.
pytestmark = pytest.mark.timeout(1800)


@dataclass(frozen=True)
class Remote:
    fixture: str
    running: str  # gauge: requests being generated now
    generated: str | None  # counter of tokens, counted as they are generated (None: at a request's end)
    cancelled: str | None  # counter of requests the client went away from (vLLM has none: test_vllm.py
    #                        shows that vLLM aborts a cancelled stream, with min_tokens)

    def generating(self, before: dict[str, float], now: dict[str, float]) -> bool:
        if self.generated is None:
            return now.get(self.running) == 1
        # vLLM's /metrics answers slowly while it streams on 2 busy cores, so its running gauge
        # can be missed at 1 (an Invoked request's candidates may be short); the tokens generated
        # since `before` cannot. More than the warm-ups' one token each (quick and full).
        return now.get(self.generated, 0) - before.get(self.generated, 0) > 2


REMOTES = {
    "serve": Remote("loopls_server", "loopls_num_requests_running", None,
                    'loopls_requests_total{endpoint="/v1/completions",outcome="cancelled"}'),
    "vllm": Remote("vllm_server", "vllm:num_requests_running", "vllm:generation_tokens_total", None),
}


def _remote(request) -> tuple[ServerProcess, str, Remote]:
    remote = REMOTES[request.param]
    server = request.getfixturevalue(remote.fixture)
    name = "tiny" if request.param == "serve" else str(request.getfixturevalue("small_checkpoints")["iquestloopcoder"])
    return server, name, remote


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), params=sorted(REMOTES))
async def client(lsp_client: LanguageClient, request):
    server, name, remote = _remote(request)
    lsp_client.remote, lsp_client.metrics_of = server, remote
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(),
        root_uri="file:///tmp/loopls-remote",
        initialization_options={
            "model": {"backend": "openai", "url": server.url, "name": name, "timeout": 20},
            "completion": {"maxTokens": 12},
        },
    ))
    yield
    await lsp_client.shutdown_session()


def _open(client: LanguageClient, uri: str = URI) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=TEXT)))


def _inline(uri: str = URI) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=6, character=4),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
    )


async def _status(client: LanguageClient) -> dict:
    result = await client.protocol.send_request_async("loopls/status", None)
    return {k: getattr(result, k) for k in result._fields}


async def _until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_inline_completions_arrive_from_the_remote_server(client: LanguageClient) -> None:
    _open(client)
    result = await client.text_document_inline_completion_async(_inline())
    assert isinstance(result, types.InlineCompletionList) and result.items[0].insert_text
    model = (await _status(client))["model"]
    assert (model.backend, model.path, model.loaded) == ("openai", client.remote.url, True)
    assert model.untrained is True  # the checkpoint says so; the user is told
    assert any("untrained" in m.message for m in client.messages)


async def test_cancelling_in_the_editor_aborts_the_server_side_request(client: LanguageClient) -> None:
    _open(client)
    await client.text_document_inline_completion_async(_inline())  # loaded, warm
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"loopls": {"model": {"backend": "openai", "url": client.remote.url,
                                       "name": (await _status(client))["model"].name, "timeout": 20},
                             "completion": {"maxTokens": 4000}}}))
    remote, before = client.metrics_of, client.remote.metrics()
    request = asyncio.ensure_future(client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, _inline(), msg_id="slow"))
    await _until(lambda: remote.generating(before, client.remote.metrics()))  # generating on the server
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="slow"))
    with pytest.raises(JsonRpcException) as info:
        await asyncio.wait_for(request, timeout=30)
    assert info.value.code == types.LSPErrorCodes.RequestCancelled
    await _until(lambda: client.remote.metrics().get(remote.running) == 0, timeout=20)  # the server let go of it
    after = client.remote.metrics()
    if remote.cancelled is not None:
        assert after[remote.cancelled] - before.get(remote.cancelled, 0) >= 1
    if remote.generated is not None:
        await asyncio.sleep(1.0)
        assert client.remote.metrics()[remote.generated] == after[remote.generated]  # nothing generates any more
    if remote.fixture == "loopls_server":
        assert after["loopls_kv_blocks_used"] == 0
    assert (await _status(client))["stats"].cancelled == 1


async def test_dead_server_gives_one_message_and_completions_come_back(client: LanguageClient) -> None:
    """Stops the shared server and starts it again on the same port (keep this test last)."""
    uris = [URI.replace("example", f"file{k}") for k in range(5)]  # fresh documents: no cached items
    for uri in uris:
        _open(client, uri)
    assert (await client.text_document_inline_completion_async(_inline(uris[0]))).items
    await asyncio.to_thread(client.remote.stop)
    for uri in uris[1:4]:  # typing on: every request fails, the user is told once
        with pytest.raises(JsonRpcException, match="cannot reach the model server"):
            await client.text_document_inline_completion_async(_inline(uri))
    failures = [m.message for m in client.messages if "completions are failing" in m.message]
    assert len(failures) == 1 and f"cannot reach the model server at {client.remote.url}" in failures[0]
    await asyncio.to_thread(client.remote.start)
    result = await client.text_document_inline_completion_async(_inline(uris[4]))
    assert result.items and result.items[0].insert_text
    assert any("answers again" in m.message for m in client.log_messages)
    assert len([m for m in client.messages if "completions are failing" in m.message]) == 1


async def test_a_server_on_a_remote_model_never_imports_torch(loopls_server: ServerProcess) -> None:
    """With the `openai` backend the model runs elsewhere: the server reads the tokenizer and
    streams over HTTP, and has no torch mapped once the model is ready and has answered."""
    client = pytest_lsp.make_test_lsp_client()
    await client.start_io(*SERVER)
    try:
        await client.initialize_session(types.InitializeParams(
            capabilities=types.ClientCapabilities(), root_uri="file:///tmp/loopls-remote",
            initialization_options={"model": {"backend": "openai", "url": loopls_server.url, "name": "tiny",
                                              "timeout": 20}, "completion": {"maxTokens": 4}}))
        _open(client)
        result = await client.text_document_inline_completion_async(_inline())
        assert isinstance(result, types.InlineCompletionList) and result.items[0].insert_text
        assert (await _status(client))["model"].loaded
        maps = Path(f"/proc/{client._server.pid}/maps").read_text()
        assert "/libtorch" not in maps, "the language server imported torch"
        assert "/libtorch" in Path(f"/proc/{loopls_server.proc.pid}/maps").read_text()  # the check sees it there
    finally:
        await client.shutdown_session()
        await client.stop()
