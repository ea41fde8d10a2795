"""A real LSP client session with the real server over stdio, for tests that need their own
capabilities, options or workspace (pytest-lsp's client, started by hand)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import git
from lsprotocol import types
from pytest_lsp import LanguageClient, make_test_lsp_client

SERVER = [sys.executable, "-m", "loopls.lsp", "lsp"]


def plain(value: Any) -> Any:
    """pygls hands custom messages over as namedtuples: turn them into dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


async def start_in_git_workspace(client: LanguageClient, base: Path, capabilities: types.ClientCapabilities) -> Path:
    """Initialize `client`'s server in a new git repository under `base` (one committed file,
    util.py) with the tiny random model and short completions; the workspace root."""
    root = base / "ws"
    repo = git.Repo.init(root)
    (root / "util.py").write_text("def helper(a, b):\n    return a + b\n")
    repo.index.add(["util.py"])
    repo.index.commit("init", author=git.Actor("dev", "dev@example.com"))
    await client.initialize_session(types.InitializeParams(
        capabilities=capabilities, root_uri=root.as_uri(),
        initialization_options={"model": {"name": "tiny-random"}, "completion": {"maxTokens": 4}},
    ))
    return root


@contextlib.asynccontextmanager
async def session(root: Path | None, init_options: dict | None = None,
                  capabilities: types.ClientCapabilities | None = None, configuration: dict | None = None):
    client = make_test_lsp_client()
    client.statuses = []

    @client.feature("loopls/status")
    def on_status(ls: LanguageClient, params: Any) -> None:
        ls.statuses.append(plain(params))

    if configuration is not None:
        client.set_configuration(configuration, section="loopls")
    await client.start_io(*SERVER)
    try:
        client.init_result = await client.initialize_session(types.InitializeParams(
            capabilities=capabilities or types.ClientCapabilities(),
            root_uri=root.as_uri() if root else None,
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)] if root else None,
            initialization_options=init_options,
        ))
        yield client
    finally:
        await client.shutdown_session()
        await client.stop()


async def status(client: LanguageClient) -> dict:
    return plain(await client.protocol.send_request_async("loopls/status", None))


async def wait_for_state(client: LanguageClient, *states: str, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        current = await status(client)
        if current["state"] in states:
            return current
        assert time.monotonic() < deadline, f"status stayed {current['state']}: {current.get('message')}"
        await asyncio.sleep(0.1)


def open_document(client: LanguageClient, uri: str, text: str, language: str = "python", version: int = 1) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)))


def inline_params(uri: str, line: int, character: int, invoked: bool = False) -> types.InlineCompletionParams:
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=kind),
    )


def insert(client: LanguageClient, uri: str, version: int, line: int, character: int, text: str) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=line, character=character),
                              end=types.Position(line=line, character=character)),
            text=text)],
    ))
