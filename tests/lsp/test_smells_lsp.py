"""Code-smell diagnostics over LSP with a real client and the real server over stdio:
pull (document and workspace), push for clients without pull support, change impact from an
unsaved buffer, options, and the model-driven quick fix (tiny model: no edit, clear reason)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import git
import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

SERVER = [sys.executable, "-m", "loopls.lsp", "lsp"]
BRANCHY = "def route(kind, value, extra):\n" + "".join(
    f"    if kind == {i} and value:\n        return {i}\n" for i in range(6)) + "    return -1\n"
FILES = {
    "lib.py": "def area(w, h):\n    return w * h\n",
    "app.py": "from lib import area\n\nprint(area(2, 3))\n",
    "router.py": BRANCHY,
    "wide.py": "def wide(a, b, c, d, e, f):\n    return a\n",
}


def make_workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    repo = git.Repo.init(root)
    for name, text in FILES.items():
        (root / name).write_text(text)
    repo.index.add(list(FILES))
    repo.index.commit("init", author=git.Actor("dev", "dev@example.com"))
    return root


def _open(client: LanguageClient, root: Path, rel: str, text: str | None = None, version: int = 1) -> str:
    uri = (root / rel).as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=version, text=text if text is not None else FILES[rel])))
    return uri


def _change_all(client: LanguageClient, uri: str, text: str, version: int) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))


async def _pull(client: LanguageClient, uri: str) -> list[types.Diagnostic]:
    report = await client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    return list(report.items)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient, workspace: Path):
    lsp_client.init_result = await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(text_document=types.TextDocumentClientCapabilities(
            diagnostic=types.DiagnosticClientCapabilities(related_document_support=True))),
        root_uri=workspace.as_uri(),
        initialization_options={"model": {"name": "tiny-random"}, "completion": {"maxTokens": 4},
                                "smells": {"thresholds": {"maxCognitive": 5}}},
    ))
    yield
    await lsp_client.shutdown_session()


async def test_pull_diagnostics_have_code_link_source_and_threshold(client: LanguageClient, workspace: Path):
    caps = client.init_result.capabilities
    assert caps.diagnostic_provider.workspace_diagnostics is True
    assert caps.code_action_provider.resolve_provider is True
    uri = _open(client, workspace, "router.py")
    items = await _pull(client, uri)
    by_code = {d.code: d for d in items}
    assert set(by_code) == {"LS102", "LS101", "LS106"}  # cognitive > 5 (our option), McCabe 13 > 10, returns 7 > 6
    d = by_code["LS101"]
    assert d.source == "loopls" and "13" in d.message and "threshold 10" in d.message
    assert d.code_description.href.endswith("docs/smells.md#cyclomatic-complexity")
    assert d.range.start == types.Position(line=0, character=4)  # the function's name
    assert "threshold 5" in by_code["LS102"].message


async def test_unsaved_signature_change_flags_call_sites_and_workspace_report(client: LanguageClient, workspace: Path):
    app = _open(client, workspace, "app.py")
    lib = _open(client, workspace, "lib.py")
    assert [d.code for d in await _pull(client, app)] == []
    _change_all(client, lib, "def area(w, h, depth):\n    return w * h * depth\n", 2)
    await _pull(client, lib)  # the server reads the buffer: the signature changed
    (impact,) = [d for d in await _pull(client, app) if d.code == "LS501"]
    assert impact.range.start.line == 2 and "missing depth" in impact.message
    report = await client.workspace_diagnostic_async(types.WorkspaceDiagnosticParams(previous_result_ids=[]))
    by_uri = {item.uri: [d.code for d in item.items] for item in report.items}
    assert by_uri[(workspace / "wide.py").as_uri()] == ["LS104"]  # a file that is not open
    assert "LS501" in by_uri[app]
    # asked again with the ids it got, after an edit elsewhere: only what changed comes in full
    ids = [types.PreviousResultId(uri=item.uri, value=item.result_id) for item in report.items]
    _change_all(client, lib, "def area(w, h, depth=1):\n    return w * h * depth\n", 3)
    again = await client.workspace_diagnostic_async(types.WorkspaceDiagnosticParams(previous_result_ids=ids))
    kinds = {item.uri: item.kind for item in again.items}
    assert kinds[(workspace / "wide.py").as_uri()] == "unchanged"
    assert kinds[app] == "full" and [d.code for d in next(i for i in again.items if i.uri == app).items] == []


async def test_quick_fix_with_tiny_model_returns_no_edit_and_a_reason(client: LanguageClient, workspace: Path):
    uri = _open(client, workspace, "wide.py")
    (diag,) = await _pull(client, uri)
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=diag.range,
        context=types.CodeActionContext(diagnostics=[diag])))
    (action,) = actions
    assert action.kind == types.CodeActionKind.QuickFix and action.edit is None
    assert "too-many-arguments" in action.title
    resolved = await client.code_action_resolve_async(action)
    assert resolved.edit is None
    assert "did not parse" in resolved.disabled.reason and "untrained" in resolved.disabled.reason


@pytest.fixture
def push_workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def push_client(lsp_client: LanguageClient, push_workspace: Path):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(),  # no pull diagnostics: the server pushes
        root_uri=push_workspace.as_uri(),
        initialization_options={"smells": {"disabled": ["cognitive-complexity"]}},
    ))
    yield
    await lsp_client.shutdown_session()


async def _wait_for(client: LanguageClient, uri: str, predicate, timeout: float = 60.0):
    async def poll():
        while not (uri in client.diagnostics and predicate(client.diagnostics[uri])):
            await asyncio.sleep(0.05)
        return client.diagnostics[uri]
    return await asyncio.wait_for(poll(), timeout)


async def test_push_diagnostics_follow_edits(push_client: LanguageClient, push_workspace: Path):
    uri = _open(push_client, push_workspace, "wide.py")
    pushed = await _wait_for(push_client, uri, lambda items: len(items) == 1)
    assert pushed[0].code == "LS104" and pushed[0].source == "loopls"
    # a suppression comment typed into the buffer clears it
    _change_all(push_client, uri, "def wide(a, b, c, d, e, f):  # loopls: ignore[LS104]\n    return a\n", 2)
    assert len(await _wait_for(push_client, uri, lambda items: len(items) == 0)) == 0
    router = _open(push_client, push_workspace, "router.py")
    codes = {d.code for d in await _wait_for(push_client, router, lambda items: len(items) > 0)}
    assert codes == {"LS101", "LS106"}  # cognitive complexity disabled by the option
