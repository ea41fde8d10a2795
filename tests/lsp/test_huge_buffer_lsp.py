"""The issue's 100,000-line buffer (`y = 1` on every line: 600 KB, under the byte limit, over
the 50,000-line limit) open and edited over a real client: every request kind still answers,
the diagnostics say in one note why the file is not checked, and explainContext answers
repeated and moved-cursor questions.

Bounds are liveness bounds only (the server answers at all); latency is measured by
bench/worst_latency.py (`identical100k`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from lsp_session import SERVER, plain, start_in_git_workspace

LINES = 100_000
LIVENESS_S = 30.0


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient, tmp_path: Path):
    lsp_client.root = await start_in_git_workspace(lsp_client, tmp_path, types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(diagnostic=types.DiagnosticClientCapabilities())))
    yield
    await lsp_client.shutdown_session()


async def _request(client: LanguageClient, method: str, params) -> object:
    return plain(await asyncio.wait_for(client.protocol.send_request_async(method, params), LIVENESS_S))


async def test_every_request_answers_with_a_100000_line_buffer(client: LanguageClient):
    uri = (client.root / "big.py").as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text="y = 1\n" * LINES)))
    for version, line in enumerate([5, 50_000, 99_998, 12_345], start=2):
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(range=types.Range(
                start=types.Position(line=line, character=0), end=types.Position(line=line, character=1)), text="z")]))

    status = await _request(client, "loopls/status", None)
    assert status["stats"]["tracked"]["documents"] == 1
    report = await asyncio.wait_for(client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(uri=uri))), LIVENESS_S)
    (note,) = report.items
    assert note.code == "LS001" and "100,001 lines exceed the 50,000-line limit" in note.message
    actions = await asyncio.wait_for(client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(line=10, character=0), end=types.Position(line=12, character=0)),
        context=types.CodeActionContext(diagnostics=[]))), LIVENESS_S)
    assert actions is None or isinstance(actions, list)

    def explain(line: int) -> dict:
        return {"textDocument": {"uri": uri}, "position": {"line": line, "character": 0}, "budget": 512}

    first = await _request(client, "loopls/explainContext", explain(50_000))
    assert first["snippets"][-1]["path"] == "big.py" and first["prompt_tokens"] <= 512 and "stale" not in first
    assert await _request(client, "loopls/explainContext", explain(50_000)) == first  # the same question
    moved = await _request(client, "loopls/explainContext", explain(70_000))
    assert moved.get("stale") is None or moved["position"] == {"line": 50_000, "character": 0}
    # the server is still the same process and answers
    assert (await _request(client, "loopls/contextStatus", None))["openDocuments"] == ["big.py"]
