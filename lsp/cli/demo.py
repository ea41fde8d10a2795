"""`loopls demo`: the main job. Starts the real server over stdio, attaches a real LSP client
to a sample project and prints what an editor would be shown."""

from __future__ import annotations

import asyncio
import sys
import time
from importlib import resources
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from ..model_host import UNTRAINED_NOTICE

# (file, 1-based line, 1-based column or 0 for the line end): places a user would pause at
_SAMPLE_POSITIONS = (
    ("inventory.py", 24, 0),
    ("inventory.py", 35, 0),
    ("inventory.py", 20, 0),
    ("report.py", 7, 0),
)

EDITOR_HELP = """\
Connect an editor:
  Neovim 0.11+:  vim.lsp.config('loopls', { cmd = { 'loopls' }, filetypes = { 'python', 'lua', 'go' } })
                 vim.lsp.enable('loopls')      -- or use editors/neovim (README.md)
  VS Code:       build editors/vscode (npm install && npm run package) and install the .vsix;
                 "loopls.model.name" picks another model (a checkpoint folder).
  Any client:    run `loopls` (stdio) or `loopls lsp --tcp 127.0.0.1:2087`.
"""


def _bundled_project() -> Path:
    return Path(str(resources.files("loopls.lsp.cli") / "demo_project"))


def _positions(project: Path) -> list[tuple[Path, int, int]]:
    if (project / "inventory.py").is_file() and (project / "report.py").is_file():
        return [(project / f, line, col) for f, line, col in _SAMPLE_POSITIONS]
    # Any other project: the end of the first lines of a few Python files.
    files = sorted(p for p in project.rglob("*.py") if ".venv" not in p.parts)[:3]
    return [(f, min(5, f.read_text(encoding="utf-8", errors="replace").count("\n") + 1), 0) for f in files]


def plain(value):
    """pygls hands results of custom requests back as namedtuples; turn them into dicts."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


async def _complete_once(client: LanguageClient, project: Path, path: Path, text: str, line: int, col: int) -> str:
    """One inline completion request, formatted as the block the demo prints."""
    lines = text.splitlines()
    line_text = lines[line - 1] if line <= len(lines) else ""
    character = len(line_text) if col == 0 else col - 1
    where = f"{path.relative_to(project)}:{line}:{character + 1}"
    t0 = time.perf_counter()
    try:
        result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
            position=types.Position(line=line - 1, character=character),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        ))
    except Exception as exc:  # show any server error and go on, as an editor would
        return f"{where}  error: {exc}\n"
    elapsed = (time.perf_counter() - t0) * 1000
    items = result.items if isinstance(result, types.InlineCompletionList) else result or []
    texts = [i.insert_text if isinstance(i.insert_text, str) else i.insert_text.value for i in items]
    out = [f"{where}  ({elapsed:.0f} ms)", f"  {line_text[:character]}\u2038{line_text[character:]}"]
    out += ["  \u2192 " + t.replace("\n", "\n    ") for t in texts or ["(no completion)"]]
    return "\n".join(out) + "\n"


async def _wait_for_index(client: LanguageClient, timeout: float = 30.0) -> dict:
    """The server indexes the workspace in the background; completions use it once ready."""
    deadline = time.perf_counter() + timeout
    while True:
        status = plain(await client.protocol.send_request_async("loopls/contextStatus", None))
        if status.get("indexed") or time.perf_counter() > deadline:
            return status
        await asyncio.sleep(0.1)


async def _show_context(client: LanguageClient, project: Path) -> None:
    """What went into the prompt of the last sample position, and why (loopls/explainContext)."""
    path, line, col = _positions(project)[-1]
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    character = len(lines[line - 1]) if col == 0 else col - 1
    try:
        result = plain(await client.protocol.send_request_async("loopls/explainContext", {
            "textDocument": {"uri": path.as_uri()}, "position": {"line": line - 1, "character": character}}))
    except Exception as exc:  # an editor would show the error and go on
        print(f"context: error: {exc}\n")
        return
    snippets = result.get("snippets", [])
    print(f"context packed for {path.relative_to(project)}:{line}:{character + 1} "
          f"({result.get('prompt_tokens', '?')} tokens, loopls/explainContext):")
    for snip in snippets[:8]:
        print(f"  {snip['path']}:{snip['start_line']}-{snip['end_line']}  {snip['source']}  "
              f"{snip['tokens']} tokens")
    print()


async def _show_smells(client: LanguageClient, project: Path) -> None:
    """Pull code-smell diagnostics for the project's Python files and list the quick fixes."""
    print("code-smell diagnostics (pulled with textDocument/diagnostic):")
    found = 0
    for path in sorted(project.glob("*.py"))[:10]:
        text = path.read_text(encoding="utf-8")
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=path.as_uri(), language_id="python", version=1, text=text)))
        report = await client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri())))
        for diag in getattr(report, "items", []) or []:
            found += 1
            where = f"{path.relative_to(project)}:{diag.range.start.line + 1}:{diag.range.start.character + 1}"
            print(f"  {where}  {diag.code}  {diag.message}")
            if found == 1:
                first = (path, diag)
    if not found:
        print("  (none)")
        return
    path, diag = first
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=path.as_uri()), range=diag.range,
        context=types.CodeActionContext(diagnostics=[diag], only=[types.CodeActionKind.QuickFix])))
    print(f"quick fixes offered for the first one: {', '.join(a.title for a in actions or []) or '(none)'}")


async def _demo(project: Path, model: str | None) -> int:
    client = LanguageClient("loopls-demo", "1")
    messages: list[str] = []

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def show_message(params: types.ShowMessageParams) -> None:
        messages.append(params.message)

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def log_message(params: types.LogMessageParams) -> None:
        messages.append(params.message)

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def publish(params: types.PublishDiagnosticsParams) -> None:
        """Pushed diagnostics; the demo pulls them instead, as current editors do."""

    @client.feature("loopls/status")
    def status_pushed(params) -> None:
        """The status an editor shows in its status bar; the demo asks for it at the end."""

    command = [sys.executable, "-m", "loopls.lsp", "lsp"] + (["--model", model] if model else [])
    started = time.perf_counter()
    await client.start_io(*command)
    result = await client.initialize_async(types.InitializeParams(
        # as editors do: code actions are resolved lazily (the model runs on resolve)
        capabilities=types.ClientCapabilities(text_document=types.TextDocumentClientCapabilities(
            code_action=types.CodeActionClientCapabilities(
                resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]), disabled_support=True))),
        root_uri=project.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=project.as_uri(), name=project.name)],
    ))
    client.initialized(types.InitializedParams())
    caps = result.capabilities
    print(f"server: {result.server_info.name} {result.server_info.version} (started in {time.perf_counter() - started:.1f}s)")
    print(f"  inline completion: {'yes' if caps.inline_completion_provider else 'no'}, "
          f"completion: {'yes' if caps.completion_provider else 'no'}, "
          f"code actions: {'yes' if caps.code_action_provider else 'not yet'}, "
          f"diagnostics: {'yes' if caps.diagnostic_provider else 'not yet'}")
    print(f"project: {project}\n")
    index = await _wait_for_index(client)
    opened: set[Path] = set()
    shown: list[str] = []
    for path, line, col in _positions(project):
        text = path.read_text(encoding="utf-8")
        if path not in opened:
            client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
                uri=path.as_uri(), language_id="python", version=1, text=text)))
            opened.add(path)
        shown.append(await _complete_once(client, project, path, text, line, col))
    status = await client.protocol.send_request_async("loopls/status", None)
    model = plain(status)["model"]
    print(f"model: {model.get('modelType', '?')} from {model.get('path', model['name'])} on {model.get('device', '?')}")
    if model.get("untrained"):
        print(f"NOTE: {UNTRAINED_NOTICE}")
    print()
    print(f"project index: {index.get('files', 0)} files, {index.get('definitions', 0)} definitions"
          if index.get("indexed") else "project index: not ready (completions used the open buffer only)")
    print()
    print("\n".join(shown))
    await _show_context(client, project)
    await asyncio.sleep(0.1)
    await _show_smells(client, project)
    for message in dict.fromkeys(messages):
        if message != UNTRAINED_NOTICE:
            print(f"server says: {message}")
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    print("\n" + EDITOR_HELP)
    return 0


def run_demo(project: Path | None, model: str | None) -> int:
    project = (project or _bundled_project()).resolve()
    if not project.is_dir():
        print(f"loopls: {project}: not a folder", file=sys.stderr)
        return 2
    return asyncio.run(_demo(project, model))
