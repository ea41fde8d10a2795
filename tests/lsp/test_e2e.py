"""End to end over stdio: the real server, driven by pytest-lsp's real client."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient
from lsp_session import plain

SERVER = [sys.executable, "-m", "loopls.lsp", "lsp"]
URI = "file:///tmp/loopls-e2e/example.py"
TEXT = (
    "import math\n"
    "\n"
    "def area(radius):\n"
    "    return math.pi * radius ** 2\n"
    "\n"
    "def perimeter(radius):\n"
    "    \n"
)


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient):
    result = await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(),
        root_uri="file:///tmp/loopls-e2e",
        initialization_options={"completion": {"maxTokens": 16}},
    ))
    lsp_client.init_result = result
    yield
    await lsp_client.shutdown_session()


def _open(client: LanguageClient, text: str = TEXT, uri: str = URI) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))


def _inline(line: int, character: int, uri: str = URI) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
    )


async def _status(client: LanguageClient) -> dict:
    return plain(await client.protocol.send_request_async("loopls/status", None))


async def test_initialize_advertises_inline_completion(client: LanguageClient) -> None:
    caps = client.init_result.capabilities
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental
    assert client.init_result.server_info.name == "loopls"


async def test_did_open_then_inline_completion_returns_items(client: LanguageClient) -> None:
    _open(client)
    result = await client.text_document_inline_completion_async(_inline(6, 4))
    assert isinstance(result, types.InlineCompletionList)
    assert result.items and all(item.insert_text for item in result.items)
    assert result.items[0].range == types.Range(start=types.Position(line=6, character=4),
                                                end=types.Position(line=6, character=4))
    status = await _status(client)
    assert status["model"]["untrained"] is False  # the embedded default is trained: no notice
    assert not any("untrained" in m.message for m in client.messages)


async def test_did_change_then_completion_sees_the_new_text(client: LanguageClient) -> None:
    _open(client)
    # Incremental edit: type "return rad" on the last line, then add two more lines.
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=6, character=4), end=types.Position(line=6, character=4)),
            text="return rad\n\nvalue = perim",
        )],
    ))
    # line 8 exists only in the new text; the word being typed there is "perim"
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=8, character=13)))
    assert result.items
    item = result.items[0]
    assert item.filter_text.startswith("perim")
    assert item.text_edit.range.start == types.Position(line=8, character=8)
    assert item.text_edit.range.end == types.Position(line=8, character=13)
    assert item.detail == "loopls"  # no untrained-model label for the shipped default


async def test_cancelled_request_ends_without_result_and_server_keeps_serving(client: LanguageClient) -> None:
    _open(client)
    await client.text_document_inline_completion_async(_inline(6, 4))  # model loaded and warm
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"loopls": {"completion": {"maxTokens": 4000}}}))
    # pytest-lsp's send_request_async is a coroutine: schedule it so the request goes out now
    request = asyncio.ensure_future(client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, _inline(6, 4), msg_id="slow-request"))
    await asyncio.sleep(0.3)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="slow-request"))
    with pytest.raises(JsonRpcException) as info:
        await asyncio.wait_for(request, timeout=30)
    assert info.value.code == types.LSPErrorCodes.RequestCancelled
    # generation stopped: the engine thread goes idle long before 4000 tokens
    deadline = time.monotonic() + 10
    while (await _status(client))["stats"]["active_generations"]:
        assert time.monotonic() < deadline, "generation did not stop after cancel"
        await asyncio.sleep(0.05)
    status = await _status(client)
    assert 0 < status["stats"]["last_generated_tokens"] < 4000
    assert status["stats"]["cancelled"] >= 1
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"loopls": {"completion": {"maxTokens": 8}}}))
    result = await client.text_document_inline_completion_async(_inline(6, 4))
    assert result is not None and result.items


@pytest.mark.parametrize(
    ("method", "params", "fragment"),
    [
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, _inline(500, 0), "outside the document"),
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, _inline(0, 0, uri="file:///tmp/never-opened.py"), "not open"),
        (types.TEXT_DOCUMENT_COMPLETION, types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=99, character=0)),
         "outside the document"),
    ],
)
async def test_bad_positions_and_unknown_uris_get_errors(client: LanguageClient, method, params, fragment) -> None:
    _open(client)
    with pytest.raises(JsonRpcException) as info:
        await client.protocol.send_request_async(method, params)
    assert info.value.code == types.ErrorCodes.InvalidParams
    assert fragment in info.value.message
    assert (await _status(client))["version"]  # still serving


class RawConnection:
    """JSON-RPC over the server's stdio, by hand: typed clients cannot send malformed params."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await self.proc.stdin.drain()

    async def response(self, msg_id) -> dict:
        while True:
            headers = {}
            while (line := await asyncio.wait_for(self.proc.stdout.readline(), 60)) not in (b"\r\n", b""):
                key, _, value = line.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            body = json.loads(await self.proc.stdout.readexactly(int(headers["content-length"])))
            if body.get("id") == msg_id and "method" not in body:
                return body


async def test_malformed_params_get_an_error_not_a_crash() -> None:
    proc = await asyncio.create_subprocess_exec(
        *SERVER, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    conn = RawConnection(proc)
    try:
        await conn.send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                         "params": {"processId": None, "rootUri": None, "capabilities": {}}})
        assert "capabilities" in (await conn.response(1))["result"]
        await conn.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        await conn.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": URI, "languageId": "python", "version": 1, "text": TEXT}}})
        bad_params = [
            {"textDocument": 42},
            {"textDocument": {"uri": URI}, "position": {"line": "x", "character": 0}},
            None,
            [1, 2, 3],
        ]
        for i, params in enumerate(bad_params, start=10):
            await conn.send({"jsonrpc": "2.0", "id": i, "method": "textDocument/inlineCompletion", "params": params})
            reply = await conn.response(i)
            assert "error" in reply and "result" not in reply, reply
            assert reply["error"]["code"] in (-32602, -32603), reply
        position_errors = [
            {"line": "7", "character": 0}, {"line": 1.5, "character": 0}, {"line": True, "character": 0},
            {"line": -1, "character": 0}, {"line": 2**31, "character": 0},
        ]
        for i, position in enumerate(position_errors, start=30):
            params = {"textDocument": {"uri": URI}, "position": position, "context": {"triggerKind": 1}}
            await conn.send({"jsonrpc": "2.0", "id": i, "method": "textDocument/inlineCompletion", "params": params})
            reply = await conn.response(i)
            assert reply.get("error", {}).get("code") == -32602, reply
            assert "must be an integer" in reply["error"]["message"], reply
        # Infinity is no JSON number: the message is refused before its params are read
        params = {"textDocument": {"uri": URI}, "position": {"line": 6, "character": float("inf")},
                  "context": {"triggerKind": 1}}
        await conn.send({"jsonrpc": "2.0", "id": 36, "method": "textDocument/inlineCompletion", "params": params})
        reply = await conn.response(36)
        assert reply.get("error", {}).get("code") == -32700 and "Infinity" in reply["error"]["message"], reply
        await conn.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": URI + "2", "languageId": "python", "version": 1, "text": "s = '😀'\n"}}})
        split = {"textDocument": {"uri": URI + "2"}, "position": {"line": 0, "character": 6}, "context": {"triggerKind": 1}}
        await conn.send({"jsonrpc": "2.0", "id": 40, "method": "textDocument/inlineCompletion", "params": split})
        reply = await conn.response(40)  # inside the emoji's surrogate pair
        assert reply.get("error", {}).get("code") == -32602 and "inside the character" in reply["error"]["message"]
        good = {"textDocument": {"uri": URI}, "position": {"line": 6, "character": 4}, "context": {"triggerKind": 1}}
        await conn.send({"jsonrpc": "2.0", "id": 99, "method": "textDocument/inlineCompletion", "params": good})
        reply = await conn.response(99)
        assert reply["result"]["items"], reply
        await conn.send({"jsonrpc": "2.0", "id": 100, "method": "shutdown", "params": None})
        assert (await conn.response(100)).get("error") is None
        await conn.send({"jsonrpc": "2.0", "method": "exit", "params": None})
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_character_past_line_end_means_line_end(client: LanguageClient) -> None:
    _open(client)
    result = await client.text_document_inline_completion_async(_inline(6, 400))
    assert result is not None


async def test_typing_through_a_suggestion_is_answered_from_the_cache(client: LanguageClient) -> None:
    _open(client)
    first = await client.text_document_inline_completion_async(_inline(6, 4))
    suggestion = first.items[0].insert_text
    assert len(suggestion) >= 3
    before = (await _status(client))["stats"]
    typed = suggestion[:2]
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=6, character=4), end=types.Position(line=6, character=4)),
            text=typed)],
    ))
    second = await client.text_document_inline_completion_async(_inline(6, 4 + len(typed)))
    item = second.items[0]
    # the item replaces what was typed of it, so the client keeps showing it while typing through
    word = len(re.search(r"[A-Za-z0-9_$]*$", typed).group(0))
    assert item.insert_text == suggestion[2 - word:]
    assert item.range.start == types.Position(line=6, character=4 + len(typed) - word)
    after = (await _status(client))["stats"]
    assert after["cache_hits"] == before["cache_hits"] + 1
    assert after["completed"] == before["completed"]  # no new generation
