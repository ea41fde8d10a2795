"""The language server with `model.cpuWeights: int8`: the shipped model loads with int8
weights and answers inline completions over stdio to a real client (the option's way into
BackendConfig is tests/lsp/test_backend_options.py's, the engine's int8 path
tests/engine/test_int8_weights.py's)."""

from __future__ import annotations

import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

SERVER = [sys.executable, "-m", "loopls.lsp", "lsp"]
URI = "file:///tmp/loopls-int8/shapes.py"
TEXT = "import math\n\n\ndef area(radius):\n    return math.pi * radius ** 2\n\n\ndef perimeter(radius):\n    \n"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(),
        root_uri="file:///tmp/loopls-int8",
        initialization_options={"model": {"device": "cpu", "cpuWeights": "int8"}, "completion": {"maxTokens": 16}},
    ))
    yield
    await lsp_client.shutdown_session()


@pytest.mark.timeout(120)
async def test_an_inline_completion_from_int8_weights(client: LanguageClient) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=URI, language_id="python", version=1, text=TEXT)))
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=8, character=4),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
    ))
    assert isinstance(result, types.InlineCompletionList) and result.items
    assert any(item.insert_text.strip() for item in result.items)
    status = await client.protocol.send_request_async("loopls/status", None)
    assert status.model.loaded and status.model.device == "cpu" and status.model.name == "loopls-coder-small"
    assert not [m for m in client.log_messages if m.type == types.MessageType.Error]
