"""Memory and time of a workspace with both features on (context index and smell checks), for
this checkout and, in the same run, an older one ("before").

    python bench/project_model.py /work/fetched/pip --before /work/fetched/loopls-before

Each variant is the real language server over stdio, started cold (an empty loopls cache:
no persisted index), with a real LSP client: `initialize` on the repository, one file opened,
its smell diagnostics pulled (that waits for the whole-project check), `loopls/contextStatus`
polled until the index is ready, and `loopls/explainContext` asked once (the context engine a
completion uses, with its history signals, comes up). Reported per variant: wall time from `initialized` until both
are done, the server's RSS then and its peak, how many times tree-sitter parsed a file (and
per indexed source file) and how many `git log` passes ran. The counts come from a
`sitecustomize` put on the server's PYTHONPATH that wraps `tree_sitter.Parser` and GitPython's
command runner; the "before" checkout is imported through a folder of symlinks named
`loopls/` ahead of the installed one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

SITECUSTOMIZE = '''
import json, os, tree_sitter
import git.cmd

_COUNTS = {"parses": 0, "git_log": 0}
_OUT = os.environ["LOOPLS_BENCH_COUNTS"]

def _save():
    with open(_OUT, "w") as fh:
        json.dump(_COUNTS, fh)

_Real = tree_sitter.Parser

class _CountingParser:
    def __init__(self, *args, **kwargs):
        self._parser = _Real(*args, **kwargs)

    def parse(self, *args, **kwargs):
        _COUNTS["parses"] += 1
        _save()
        return self._parser.parse(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._parser, name)

tree_sitter.Parser = _CountingParser
_execute = git.cmd.Git.execute

def _counting_execute(self, command, *args, **kwargs):
    if isinstance(command, (list, tuple)) and len(command) > 1 and command[1] == "log":
        _COUNTS["git_log"] += 1
        _save()
    return _execute(self, command, *args, **kwargs)

git.cmd.Git.execute = _counting_execute
'''


def _rss_mb(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def measure(repo: Path, file: Path, pythonpath: list[str], label: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"loopls-bench-{label}-"))
    (work / "site").mkdir()
    (work / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    counts = work / "counts.json"
    env = {**os.environ, "LOOPLS_CACHE_DIR": str(work / "cache"), "LOOPLS_BENCH_COUNTS": str(counts),
           "PYTHONPATH": os.pathsep.join([str(work / "site"), *pythonpath])}
    client = LanguageClient("loopls-bench", "1")
    await client.start_io(sys.executable, "-m", "loopls.lsp", "lsp", env=env)
    pid = client._server.pid
    await client.initialize_async(types.InitializeParams(
        capabilities=types.ClientCapabilities(text_document=types.TextDocumentClientCapabilities(
            diagnostic=types.DiagnosticClientCapabilities())),
        root_uri=repo.as_uri(), initialization_options={"completion": {"maxTokens": 4}}))
    start = time.perf_counter()
    client.initialized(types.InitializedParams())
    uri = file.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text=file.read_text(encoding="utf-8"))))
    report = await client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    smells_s = time.perf_counter() - start
    while True:
        status = await client.protocol.send_request_async("loopls/contextStatus", None)
        if getattr(status, "indexed", False):
            break
        await asyncio.sleep(0.1)
    both_s = time.perf_counter() - start
    # a completion prompt's context: retrieval's engine (and its history signals) comes up too
    await client.protocol.send_request_async("loopls/explainContext", {
        "textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}, "budget": 2048})
    explain_s = time.perf_counter() - start
    rss, peak = _rss_mb(pid)
    files = getattr(status, "files", 0)
    await client.shutdown_async(None)
    client.exit(None)
    await asyncio.sleep(1.0)
    await client.stop()
    got = json.loads(counts.read_text()) if counts.exists() else {"parses": -1, "git_log": -1}
    return {"label": label, "cold_s": both_s, "explain_s": explain_s, "smells_s": smells_s, "rss": rss, "peak": peak, "files": files,
            "diagnostics": len(getattr(report, "items", []) or []), **got}


def _before_path(checkout: Path, folder: Path) -> str:
    """A folder whose `loopls/` holds the old checkout's four packages (symlinks)."""
    (folder / "loopls").mkdir(parents=True, exist_ok=True)
    for name in ("lsp", "context", "engine", "kernels"):
        link = folder / "loopls" / name
        if not link.exists():
            link.symlink_to(checkout / name)
    return str(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path, help="a git repository to open as the workspace")
    parser.add_argument("--before", type=Path, help="an older loopls checkout to measure in the same run")
    parser.add_argument("--file", help="the file to open (repository-relative; default: the first Python file)")
    args = parser.parse_args()
    repo = args.repo.resolve()
    listed = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    source_lines = sum(1 for p in listed if p.endswith((".py", ".js", ".ts", ".go", ".rs", ".java", ".c", ".h"))
                       for _ in open(repo / p, "rb") if (repo / p).is_file())
    file = repo / (args.file or next(p for p in listed if p.endswith(".py")))
    variants = []
    if args.before:
        variants.append(("before", [_before_path(args.before.resolve(), Path(tempfile.mkdtemp()))]))
    variants.append(("after", []))
    rows = [asyncio.run(measure(repo, file, path, label)) for label, path in variants]
    print(f"repository: {repo} ({len(listed)} files, {source_lines:,} source lines), opened {file.relative_to(repo)}")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print("| variant | initialized -> first diagnostics | -> index ready | -> first explainContext | RSS | "
          "peak RSS | tree-sitter parses | files indexed | `git log` passes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['smells_s']:.1f} s | {r['cold_s']:.1f} s | {r['explain_s']:.1f} s | {r['rss']:.0f} MB | "
              f"{r['peak']:.0f} MB | {r['parses']} | {r['files']} | {r['git_log']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
