"""The context engine over LSP: indexing progress, loopls/explainContext, incremental updates
from didChange and from file events on disk. Real server over stdio, real client."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from lsp_session import plain

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "context"))
from context_helpers import make_repo, write  # noqa: E402

SERVER = [sys.executable, "-m", "loopls.lsp", "lsp"]
MAIN = "from shapes import Square\n\n\ndef run():\n    sq = Square(2)\n    return sq.\n"
FILES = {
    "shapes.py": "class Square:\n    def __init__(self, side):\n        self.side = side\n\n"
                 "    def area(self):\n        return self.side ** 2\n",
    "colors.py": "def blend_colors(a, b):\n    return (a + b) / 2\n",
    "main.py": MAIN,
    ".env": "SECRET_VALUE=do-not-show\n",
}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    make_repo(root, [FILES])
    return root


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient, workspace: Path):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(window=types.WindowClientCapabilities(work_done_progress=True)),
        root_uri=workspace.as_uri(),
        initialization_options={"completion": {"maxTokens": 4}},
    ))
    yield
    await lsp_client.shutdown_session()


def _open(client: LanguageClient, root: Path, rel: str, text: str) -> str:
    uri = (root / rel).as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    return uri


async def _explain(client: LanguageClient, uri: str, line: int, character: int, budget: int = 1024) -> dict:
    return plain(await client.protocol.send_request_async("loopls/explainContext", {
        "textDocument": {"uri": uri}, "position": {"line": line, "character": character}, "budget": budget}))


def _sources(result: dict) -> dict[str, str]:
    return {s["path"]: s["source"] for s in result["snippets"]}


async def test_explain_context_and_progress(client: LanguageClient, workspace: Path):
    uri = _open(client, workspace, "main.py", MAIN)
    result = await _explain(client, uri, 5, 14)
    assert result["prompt_tokens"] <= 1024
    assert "definition" in _sources(result)["shapes.py"]
    assert result["snippets"][-1] == {**result["snippets"][-1], "path": "main.py", "source": "current"}
    first = next(s for s in result["snippets"] if s["path"] == "shapes.py")
    assert first["start_line"] == 1  # 1-based
    assert ".env" not in _sources(result)
    (reports,) = [values for values in client.progress_reports.values()
                  if values and getattr(values[0], "title", "") == "loopls: indexing"]
    assert isinstance(reports[0], types.WorkDoneProgressBegin) and isinstance(reports[-1], types.WorkDoneProgressEnd)
    assert "3 files" in reports[-1].message  # main, shapes, colors (.env is secret)


async def test_did_change_updates_the_index(client: LanguageClient, workspace: Path):
    uri = _open(client, workspace, "main.py", MAIN)
    assert "definition" not in _sources(await _explain(client, uri, 5, 14, budget=200)).get("colors.py", "")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=5, character=14), end=types.Position(line=5, character=14)),
            text="side\n    blend_colors(")],
    ))
    result = await _explain(client, uri, 6, 17, budget=200)
    assert "definition" in _sources(result)["colors.py"]


async def test_files_changed_on_disk(client: LanguageClient, workspace: Path):
    uri = _open(client, workspace, "main.py", MAIN + "    make_widget()\n")
    assert "widgets.py" not in _sources(await _explain(client, uri, 6, 10))
    write(workspace, {"widgets.py": "def make_widget():\n    return 'w'\n"})
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
        types.FileEvent(uri=(workspace / "widgets.py").as_uri(), type=types.FileChangeType.Created)]))
    await asyncio.sleep(0.2)
    result = await _explain(client, uri, 6, 10)
    assert "definition" in _sources(result)["widgets.py"]


async def test_completion_uses_packed_context(client: LanguageClient, workspace: Path):
    uri = _open(client, workspace, "main.py", MAIN)
    await _explain(client, uri, 5, 14)  # waits for the index and the model
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=5, character=14),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked)))
    assert result is None or isinstance(result, types.InlineCompletionList)
    status = plain(await client.protocol.send_request_async("loopls/contextStatus", {}))
    assert status["indexed"] and status["files"] == 3 and status["openDocuments"] == ["main.py"]
    assert status["completionPrompts"] == 1
    assert 0 < status["lastPromptTokens"] <= 2048  # completion.contextTokens, the default budget


async def test_bad_explain_params(client: LanguageClient, workspace: Path):
    from pygls.exceptions import JsonRpcException

    with pytest.raises(JsonRpcException):
        await client.protocol.send_request_async("loopls/explainContext", {"position": {"line": 0}})
    with pytest.raises(JsonRpcException):
        await _explain(client, (workspace / "main.py").as_uri(), 0, 0)  # not open
