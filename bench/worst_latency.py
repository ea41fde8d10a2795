"""Worst-case request latency of the language server with a huge buffer open.

    python bench/worst_latency.py [--lines 100000] [--repeat 20] [--cases varied,identical,untitled]

Starts the server over stdio as an editor does (the embedded default model, on CPU, smell
checks on: the defaults), in a small git project, opens one huge buffer and times every
request kind it answers, from the moment the request is written to its reply:

- `didOpen` / `didChange`: the notification, then `loopls/status` right behind it (the time
  until that reply is how long the notification held the server);
- `status`, `codeAction` (at the cursor line), `codeAction/resolve` (when one is offered),
  pull diagnostics (`textDocument/diagnostic`, after an edit), `explainContext` (files in
  the workspace only);
- "diagnostic (refreshed)": the client declares `workspace/diagnostic/refresh` support, as
  VS Code does, so a pull may be answered with the last diagnostics while the check runs;
  this row is the time from such a pull to the server's refresh request (fresh diagnostics
  ready). It is the analysis' own time, like "generated", not held to the goal;
- inline completion and completion on their fast path: typing through a suggestion already
  shown (the cache answers); the generated suggestion before it is reported apart
  ("generated"), since it includes the model's own time.

Cases: `varied` (N lines of generated Python functions, many near-duplicates), `identical`
(20,000 lines of `y = 1`), `identical100k` (100,000 lines of `y = 1`: 600 KB, under the byte
limit, over the line limit), `untitled` (the varied text as an `untitled:` buffer, which no
project holds). Prints P50/P95/max per case and request kind; the goal is max <= 100 ms for
everything but "generated". An `explainContext` answered with the last explanation of the
same document version (the fresh one not ready in time) is reported apart, "(stale)". Per
case it also prints the server's full garbage collections (`loopls/status` stats.gc): each
holds the GIL for its whole length, and every request arriving meanwhile waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lsp_latency import LAUNCHER, Connection, position, source_tree, stop_server  # noqa: E402 - the benches' one client

IDENTICAL_LINES = 20_000
HUGE_IDENTICAL_LINES = 100_000
REFRESH_WAIT_S = 3.0  # how long to wait for a refresh after a pull answered with older diagnostics


def varied_source(lines: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    out: list[str] = []
    i = 0
    while len(out) < lines:
        body = rng.choice([
            ["    total = 0", "    for item in items:", "        if item > limit:", "            total += item",
             "    return total"],
            ["    result = []", "    for key, value in mapping.items():", "        result.append((key, value * 2))",
             "    return result"],
            [f"    x = a * {rng.randint(0, 999)} + b", f"    return x - {rng.randint(0, 999)}"],
        ])
        out += [f"def func_{i}(a, b, items=(), limit=0, mapping={{}}):", *body, "", ""]
        i += 1
    return "\n".join(out[:lines]) + "\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Bench:
    def __init__(self, conn: Connection, uri: str, text: str, in_workspace: bool) -> None:
        self.conn, self.uri, self.text, self.in_workspace = conn, uri, text, in_workspace
        self.version = 1
        self.times: dict[str, list[float]] = {}
        self.refreshed = asyncio.Event()
        conn.on_request = self._server_request

    def _server_request(self, message: dict) -> None:
        if message.get("method") == "workspace/diagnostic/refresh":
            self.refreshed.set()

    def note(self, kind: str, started: float) -> None:
        self.times.setdefault(kind, []).append(1000 * (time.perf_counter() - started))

    async def timed(self, kind: str, method: str, params) -> dict:
        started = time.perf_counter()
        _, future = self.conn.request(method, params)
        reply = await future
        self.note(kind, started)
        return reply

    async def notification(self, kind: str, method: str, params) -> None:
        started = time.perf_counter()
        self.conn.notify(method, params)
        await self.conn.call("loopls/status")
        self.note(kind, started)

    async def change(self, offset: int, new: str, end: int | None = None) -> None:
        end = offset if end is None else end
        self.version += 1
        rng = {"start": position(self.text, offset), "end": position(self.text, end)}
        self.text = self.text[:offset] + new + self.text[end:]
        await self.notification("didChange", "textDocument/didChange", {
            "textDocument": {"uri": self.uri, "version": self.version}, "contentChanges": [{"range": rng, "text": new}]})

    def doc(self) -> dict:
        return {"uri": self.uri}

    async def type_through(self, rng: random.Random, method: str, kind: str, repeat: int) -> None:
        """Ask explicitly at a fresh line (generated), then type the suggestion's first
        characters, asking automatically after each (the cache's fast path)."""
        tries = 0
        while len(self.times.get(kind, [])) < repeat and tries < 4 * repeat:
            tries += 1
            line_end = self.text.find("\n", rng.randrange(len(self.text) // 2, len(self.text) - 2))
            await self.change(line_end, "\n    ")
            cursor = line_end + 5
            params = {"textDocument": self.doc(), "position": position(self.text, cursor)}
            params["context"] = {"triggerKind": 1}
            reply = await self.timed(f"{kind} (generated)", method, params)
            result = reply.get("result") or {}
            items = result.get("items") if isinstance(result, dict) else result
            item = items[0] if items else {}
            text = item.get("insertText") or (item.get("textEdit") or {}).get("newText")
            if isinstance(text, dict):
                text = text.get("value")
            if not text or not text.strip():
                continue
            for ch in text[:min(len(text), 4)]:
                await self.change(cursor, ch)
                cursor += 1
                params = {"textDocument": self.doc(), "position": position(self.text, cursor),
                          "context": {"triggerKind": 2 if method.endswith("inlineCompletion") else 1}}
                await self.timed(kind, method, params)

    async def run(self, rng: random.Random, repeat: int) -> None:
        for _ in range(repeat):
            await self.timed("status", "loopls/status", None)
        for _ in range(repeat):
            await self.change(rng.randrange(len(self.text)), "x")
        for _ in range(repeat):
            line = rng.randrange(self.text.count("\n"))
            reply = await self.timed("codeAction", "textDocument/codeAction", {
                "textDocument": self.doc(), "range": {"start": {"line": line, "character": 0},
                                                      "end": {"line": line + 5, "character": 0}},
                "context": {"diagnostics": []}})
            actions = reply.get("result") or []
            if actions and len(self.times.get("codeAction/resolve", [])) < 3:
                await self.timed("codeAction/resolve", "codeAction/resolve", actions[0])
        for _ in range(repeat):
            await self.change(rng.randrange(len(self.text)), "y")
            self.refreshed.clear()
            started = time.perf_counter()
            await self.timed("diagnostic (pull)", "textDocument/diagnostic", {"textDocument": self.doc()})
            try:
                await asyncio.wait_for(self.refreshed.wait(), REFRESH_WAIT_S)
                self.note("diagnostic (refreshed)", started)
            except asyncio.TimeoutError:
                pass  # the pull was answered with fresh diagnostics (or the same ones)
        if self.in_workspace:
            for _ in range(repeat):
                offset = rng.randrange(len(self.text))
                started = time.perf_counter()
                _, future = self.conn.request("loopls/explainContext", {
                    "textDocument": self.doc(), "position": position(self.text, offset)})
                reply = await future
                stale = isinstance(reply.get("result"), dict) and reply["result"].get("stale")
                self.note("explainContext (stale)" if stale else "explainContext", started)
        await self.type_through(rng, "textDocument/inlineCompletion", "inlineCompletion (cache)", repeat)
        await self.type_through(rng, "textDocument/completion", "completion (cache)", repeat)


def make_project(base: Path) -> Path:
    project = base / "project"
    project.mkdir(parents=True)
    (project / "util.py").write_text("def helper(a, b):\n    return a + b\n", encoding="utf-8")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "-C", str(project)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "sample"], check=True)
    return project


@contextlib.asynccontextmanager
async def started_server(project: Path, cache: Path, tree: Path | None, capabilities: dict):
    """A server over stdio in `project` (this tree's, or `tree`'s), initialized with `capabilities`
    and its model loaded; shut down (or killed) on leaving. Yields the connection and process."""
    env = {**os.environ, "LOOPLS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    command = ["-c", LAUNCHER, str(tree)] if tree is not None else ["-m", "loopls.lsp", "lsp"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=env, cwd=project, limit=2**26)
    conn = Connection(proc)
    try:
        await conn.call("initialize", {"processId": os.getpid(), "rootUri": project.as_uri(), "capabilities": capabilities,
                                       "initializationOptions": {"completion": {"maxTokens": 8}}})
        conn.notify("initialized", {})
        deadline = time.monotonic() + 300
        while not (await conn.call("loopls/status"))["model"].get("loaded"):
            assert time.monotonic() < deadline, "the model did not load"
            await asyncio.sleep(0.2)
        yield conn, proc
        await stop_server(conn, proc)
    finally:
        await stop_server(conn, proc, graceful=False)
        conn.reader.cancel()


async def run_case(case: str, text: str, project: Path, cache: Path, repeat: int, seed: int,
                   tree: Path | None) -> tuple[dict, int, dict | None]:
    capabilities = {"textDocument": {"diagnostic": {}}, "workspace": {"diagnostics": {"refreshSupport": True}}}
    async with started_server(project, cache, tree, capabilities) as (conn, proc):
        uri = (project / "big.py").as_uri() if case != "untitled" else "untitled:Untitled-1"
        bench = Bench(conn, uri, text, in_workspace=case != "untitled")
        await bench.notification("didOpen", "textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": text}})
        await bench.run(random.Random(seed), repeat)
        rss = _rss_mb(proc.pid)
        collector = (await conn.call("loopls/status"))["stats"].get("gc")  # None: a server before stats.gc
    return bench.times, rss, collector


def _rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000, help="lines of the varied buffer")
    parser.add_argument("--repeat", type=int, default=20, help="requests per kind")
    parser.add_argument("--cases", default="varied,identical,identical100k,untitled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tree", help="the server from this commit or loopls source folder (default: this checkout)")
    args = parser.parse_args()
    texts = {"varied": varied_source(args.lines), "identical": "y = 1\n" * IDENTICAL_LINES,
             "identical100k": "y = 1\n" * HUGE_IDENTICAL_LINES}
    texts["untitled"] = texts["varied"]
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}, python {platform.python_version()}")
    rows = [("case", "request", "n", "P50 ms", "P95 ms", "max ms")]
    with tempfile.TemporaryDirectory(prefix="loopls-worst-") as work:
        cache = Path(os.environ.get("LOOPLS_CACHE_DIR", Path(work) / "cache"))
        tree = None
        if args.tree:
            tree, label = source_tree(args.tree, Path(work))
            print(f"# server: {label}")
        for case in args.cases.split(","):
            project = make_project(Path(work) / case)
            text = texts[case]
            times, rss, collector = asyncio.run(run_case(case, text, project, cache, args.repeat, args.seed, tree))
            label = f"{case} ({text.count(chr(10)):,} lines, RSS {rss} MB)"
            if collector is not None:
                print(f"# {case}: {collector['fullCollections']} full GC passes, the longest {collector['longestFullMs']} ms")
            for kind, values in times.items():
                rows.append((label, kind, str(len(values)), f"{percentile(values, 0.5):.1f}",
                             f"{percentile(values, 0.95):.1f}", f"{max(values):.1f}"))
                label = ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    print(f"# load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
