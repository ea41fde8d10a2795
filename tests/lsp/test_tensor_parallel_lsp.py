"""The language server with `model.tensorParallelSize`: the native engine split over two
worker processes (CPU ranks here), driven over stdio by a real client. The workers share the
server's stdout, on which the server speaks LSP: they must print nothing there."""

from __future__ import annotations

import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

SERVER = [sys.executable, "-m", "loopls.lsp", "lsp"]
URI = "file:///tmp/loopls-tp/example.py"
TEXT = "import math\n\ndef area(radius):\n    return math.pi * radius ** 2\n\ndef perimeter(radius):\n    \n"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(),
        root_uri="file:///tmp/loopls-tp",
        initialization_options={"model": {"device": "cpu", "tensorParallelSize": 2}, "completion": {"maxTokens": 8}},
    ))
    yield
    await lsp_client.shutdown_session()


@pytest.mark.timeout(240)
async def test_completions_come_from_two_tensor_parallel_workers(client: LanguageClient) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=URI, language_id="python", version=1, text=TEXT)))
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=6, character=4),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
    ))
    assert isinstance(result, types.InlineCompletionList) and result.items
    status = await client.protocol.send_request_async("loopls/status", None)
    assert status.model.device == "2 CPU ranks"
