"""A buffer of 20,000 identical lines (`y = 1`: about 20,000 duplicated-code runs, 20,000
module-level definitions) open and edited over a real client: status, code actions and pull
diagnostics still answer, the findings stop at the per-file cap with one note counting the
rest, and pulls answered with older diagnostics while the check runs are followed by a
refresh.

Bounds here are liveness bounds only (the server answers at all, well before the old
seconds-long stalls); latency is measured by bench/worst_latency.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from lsp_session import SERVER, plain, start_in_git_workspace

LINES = 20_000
TEXT = "y = 1\n" * LINES
LIVENESS_S = 30.0  # before this work a code action took up to 40 s here


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient, tmp_path: Path):
    lsp_client.root = await start_in_git_workspace(lsp_client, tmp_path, types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            diagnostic=types.DiagnosticClientCapabilities(),
            code_action=types.CodeActionClientCapabilities(
                resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]), disabled_support=True)),
        workspace=types.WorkspaceClientCapabilities(
            diagnostics=types.DiagnosticWorkspaceClientCapabilities(refresh_support=True))))
    yield
    await lsp_client.shutdown_session()


def _edit(client: LanguageClient, uri: str, version: int, line: int, text: str, end: int = 0) -> None:
    """Characters 0..end of `line` become `text`."""
    rng = types.Range(start=types.Position(line=line, character=0), end=types.Position(line=line, character=end))
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(range=rng, text=text)]))


async def _status(client: LanguageClient) -> dict:
    return plain(await client.protocol.send_request_async("loopls/status", None))


async def _pull(client: LanguageClient, uri: str) -> list[types.Diagnostic]:
    report = await asyncio.wait_for(client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(uri=uri))), LIVENESS_S)
    return list(report.items)


def _actions(client: LanguageClient, uri: str, trigger: types.CodeActionTriggerKind):
    return asyncio.wait_for(client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(line=100, character=0), end=types.Position(line=105, character=0)),
        context=types.CodeActionContext(diagnostics=[], trigger_kind=trigger))), LIVENESS_S)


async def _pull_until(client: LanguageClient, uri: str, done) -> list[types.Diagnostic]:
    """Pull until `done(items)`: while the check of the current text runs, a pull is answered
    with the last diagnostics (and a refresh request follows the fresh ones)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIVENESS_S
    while True:
        items = await _pull(client, uri)
        if done(items):
            return items
        assert loop.time() < deadline, [d.message for d in items[:3]]
        await asyncio.sleep(0.2)


async def test_status_code_actions_and_pulls_answer_with_20000_identical_lines(client: LanguageClient):
    uri = (client.root / "big.py").as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text=TEXT)))
    lines = [10, 5_000, 12_345, 19_000, 7] + [(97 * i) % LINES for i in range(40)]
    for version, line in enumerate(lines, start=2):  # a burst of typing, same line count
        _edit(client, uri, version, line, "z", end=1)
    version = len(lines) + 1

    status, actions, items = await asyncio.wait_for(asyncio.gather(
        _status(client), _actions(client, uri, types.CodeActionTriggerKind.Automatic), _pull(client, uri)), LIVENESS_S)
    assert status["state"] in ("loading", "ready", "busy")
    assert actions is None or isinstance(actions, list)  # the refactors may still be computing
    assert isinstance(items, list)  # possibly the diagnostics of an earlier version, while the check runs

    # a menu asking while the refactors are computed is told why none are listed
    menu = await _actions(client, uri, types.CodeActionTriggerKind.Invoked) or []
    assert any(a.disabled is not None and "still computing the refactors" in a.disabled.reason for a in menu) \
        or any(a.title.startswith("Extract function") for a in menu)
    # the light bulb asking again at the same place gets them once computed
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3 * LIVENESS_S
    while not any(a.title.startswith("Extract function") for a in
                  await _actions(client, uri, types.CodeActionTriggerKind.Automatic) or []):
        assert loop.time() < deadline
        await asyncio.sleep(0.3)

    items = await _pull_until(client, uri, lambda items: any(d.code == "LS001" for d in items))
    *clones, note = items
    assert len(clones) == 200 and {d.code for d in clones} == {"LS301"}
    assert note.code == "LS001" and "more findings in this file are not reported (threshold 200 per file)" \
        in note.message
    assert int(note.message.split(" ")[0].replace(",", "")) > 10_000  # counted, not built

    # the check knows the current text: a line typed at the top moves every finding down
    _edit(client, uri, version + 1, 0, "def f(a, b, c, d, e, f):\n    return a\n")
    moved = await _pull_until(client, uri, lambda items: any(d.code == "LS104" for d in items))
    assert [d.range.start.line for d in moved if d.code == "LS104"] == [0]  # six parameters
    assert client.diagnostic_refresh_count >= 1  # some pull got older diagnostics, then a refresh

    # now over the refactors' line limit: a menu says so
    menu = await _actions(client, uri, types.CodeActionTriggerKind.Invoked) or []
    assert [a.disabled.reason for a in menu if a.disabled is not None] == [
        "refactors are not offered in files over 20,000 lines (this one has 20,002)"]

    # the symbols of this long buffer were updated after the typing paused, off the keystrokes
    while (await _status(client))["stats"]["tracked"]["settle_timers"]:
        assert loop.time() < deadline + LIVENESS_S
        await asyncio.sleep(0.2)
    status = await asyncio.wait_for(_status(client), LIVENESS_S)
    assert status["stats"]["tracked"]["smell_checks"] <= 1
    # what the workspace's build left (and the model, once loaded) is out of full GC passes
    assert status["stats"]["gc"]["freezes"] >= 1
