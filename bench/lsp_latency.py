"""What a user typing in an editor gets from the language server: before and after, one run.

    python bench/lsp_latency.py [--before COMMIT] [--after PATH] [--bursts 60] [--seed 0] [--show-empty]

Replays one seeded typing trace against each server, started over stdio as an editor starts
it, on CPU, with the embedded default model (made once in a shared cache directory, so both
servers run the same checkpoint). `--before` is a commit (a git worktree of it is made and
removed) or a folder holding a loopls source tree; `--after` defaults to this checkout.
Without `--before` only the "after" server runs (the machine is shared: half the time).

The trace: a sample project (a git repo of loopls' own context/*.py files); bursts of typing
in several files, keys 60-200 ms apart (a realistic line of code from the same file, typed at
a random place, sometimes with a few backspaces and retyping), each followed by a pause of
300-1500 ms. Like VS Code, every keystroke sends `didChange` and an automatic
`textDocument/inlineCompletion` and cancels the previous request if it is still open. After a
pause that showed a suggestion, the next burst types through it (its first characters) two
times in five. Each burst draws from its own seeded generator (the seed and its number), so
the two servers see the same places, keys, key gaps and pauses, burst for burst, whatever
the other bursts typed through: only what a type-through burst types, and whether it
happens, depends on what the server showed.

Reported per server:
- shown: the share of pauses whose last request got a suggestion before the pause ended;
- P50/P95: from the last keystroke of a pause to that suggestion (also for the suggestions
  that were generated, leaving out cache hits);
- cache hits: type-through answers that needed no generation (the server's counter);
- typed through: answers from a generation that an earlier keystroke started and the user
  typed through while it ran (the server's counter; "-" for a server without it);
- wasted: tokens generated for requests that did not deliver a suggestion (superseded or
  cancelled) as a share of all tokens generated: all tokens (server counter) minus the
  tokens shown. A server that counts the tokens its answers showed (`shown_tokens`, each
  token once, also those first shown while the user types through an answer made of a
  block's first lines) is taken at its word, less the tokens of answers that arrived
  after their pause ended; for an older one, the tokens of each delivered suggestion are
  read from its `last_generated_tokens` right after the suggestion arrives. The server's
  own count of the tokens of cancelled generations is printed beside it;
- early: answers made of the complete lines of a block still being generated;
- where the warm-ups go (a server with these counters): the prompt's other files' part
  against its file window (tokens), how often that part was kept on the same line, kept on a
  nearby line or chosen anew, the warm-ups' prefill rate (ms per 1K computed tokens), and how
  many suggestions came from the short prompt of a line that was not warm yet;
- why the other pauses showed nothing: late (and where the request was when the pause
  ended, and what else the engine was running then: another generation, or a prefix-cache
  warm-up), or the reason the server gives for its null answer (`_why`); with `--show-empty`,
  each pause whose answer was null because post-processing left nothing ("empty"): the
  cursor's line (`‸` marks the cursor), the next line, the step that dropped the model's text
  and that text (the newest candidate in the server's `waste.dropped_last`); and each pause
  that showed another first token's text in place of a dropped one (the server's
  `last_replaced`), with what it showed;
- the decode time per token of the generated suggestions (median and P90; beside each of the
  slowest ones too);
- start-up: from starting the server to the model loaded and to the first completion
  answered (an explicit request), and the resident memory of the server process and of the
  processes it started (the engine's, where it has one) once the trace is over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lsp", "context", "engine", "kernels")
# Runs a server from a given source tree: the editable install's import hook is removed so
# that `loopls` resolves to the tree named on the command line.
LAUNCHER = (
    "import sys; tree = sys.argv[1]; "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
    "sys.path_hooks[:] = [h for h in sys.path_hooks if 'editable' not in repr(h).lower()]; "
    "sys.path.insert(0, tree); "
    "[sys.modules.pop(m) for m in list(sys.modules) if m == 'loopls' or m.startswith('loopls.')]; "
    "from loopls.lsp.cli import main; sys.exit(main(['lsp']))"
)


# -- JSON-RPC over the server's stdio -------------------------------------------------------

class Connection:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pending: dict[int, asyncio.Future] = {}
        self.next_id = 0
        self.on_request: Callable[[dict], None] | None = None  # sees each request from the server
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            headers = {}
            while (line := await self.proc.stdout.readline()) not in (b"\r\n", b""):
                key, _, value = line.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            if not headers:
                return
            message = json.loads(await self.proc.stdout.readexactly(int(headers["content-length"])))
            if "method" in message and "id" in message:  # a request from the server: accept it
                if self.on_request is not None:
                    self.on_request(message)
                await self._write({"jsonrpc": "2.0", "id": message["id"], "result": None})
            elif "id" in message and message["id"] in self.pending:
                future = self.pending.pop(message["id"])
                if not future.done():
                    future.set_result(message)

    async def _write(self, message: dict) -> None:
        body = json.dumps(message).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await self.proc.stdin.drain()

    def request(self, method: str, params) -> tuple[int, asyncio.Future]:
        self.next_id += 1
        msg_id = self.next_id
        future = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = future
        asyncio.ensure_future(self._write({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}))
        return msg_id, future

    async def call(self, method: str, params=None) -> dict:
        return (await self.request(method, params)[1]).get("result")

    def notify(self, method: str, params) -> None:
        asyncio.ensure_future(self._write({"jsonrpc": "2.0", "method": method, "params": params}))


async def stop_server(conn: Connection, proc: asyncio.subprocess.Process, timeout: float = 60,
                      graceful: bool = True) -> None:
    """Ask the server to shut down and exit (`graceful`), then make sure its process ended."""
    try:
        if graceful and proc.returncode is None:
            await conn.call("shutdown")
            conn.notify("exit", None)
            await asyncio.wait_for(proc.wait(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def remove_work(work: Path, worktree: Path | None) -> None:
    """Remove a bench's temporary folder and the git worktree `compared_trees` made, if any."""
    if worktree is not None:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
    shutil.rmtree(work, ignore_errors=True)


def compared_trees(before: str | None, after: str, work: Path) -> tuple[list[tuple[str, Path]], Path | None]:
    """The servers to run, (name, source tree) for "before" (when given) and "after", and the
    git worktree made for "before" (to remove at the end), if any."""
    servers, worktree = [], None
    if before:
        tree, label = source_tree(before, work)
        if (work / "before-worktree").exists():
            worktree = work / "before-worktree"
        servers.append((f"before ({label})", tree))
    servers.append(("after", source_tree(after, work)[0]))
    return servers, worktree


# -- the trace ------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    pauses: int = 0
    shown: int = 0
    latencies: list[float] = field(default_factory=list)
    generated: list[float] = field(default_factory=list)  # the latencies of suggestions not from the cache
    useful_tokens: int = 0
    phases: list[dict] = field(default_factory=list)  # per generated suggestion: the server's timings
    status: dict = field(default_factory=dict)
    empty: dict = field(default_factory=dict)  # why a pause showed nothing -> how many
    late_pauses: list[float] = field(default_factory=list)  # the pause lengths (ms) that ended before the answer
    load: tuple[float, float] = (0.0, 0.0)
    startup: dict = field(default_factory=dict)  # seconds to the model loaded and to the first completion
    memory: dict = field(default_factory=dict)  # resident MB: the server, the processes it started

    late_tokens: int = 0  # tokens of answers that arrived after their pause (a server counting shown tokens)
    dropped_seen: int = 0  # candidates the server's post-processing had dropped at the previous pause
    empty_cases: list[dict] = field(default_factory=list)  # the "empty" pauses: where, and what was dropped

    def empty_pause(self, late: bool, pause: float, stats: dict, engine: dict) -> None:
        why = _why(self, late, pause, stats)
        if late and "running" in engine:
            own = 1 if stats.get("newest") in ("generating", "typing through") else 0
            if "active_generations" in stats and stats["active_generations"] > own:
                why += ", another generation running"
            elif "active_generations" in stats and engine["running"] + engine["waiting"] > stats["active_generations"]:
                why += ", a warm-up running"
            elif engine["running"] + engine["waiting"] > 1:
                why += ", engine busy with another request"
        self.empty[why] = self.empty.get(why, 0) + 1
        self.status = stats


def _why(result: Result, late: bool, pause: float, stats: dict) -> str:
    """Why a pause showed nothing: the answer came after the pause ended ("late", with where
    the request was: debounce, prompt, warm-up, generating, typing through), or the
    last request answered null for the reason the server gives (`last_null`: "empty" when
    post-processing left nothing, "cancelled" when the text generated left the typed one).
    """
    if late:  # where the request was when the pause ended; a generation's tokens so far
        result.late_pauses.append(pause * 1000)
        where = stats.get("newest") or "?"
        if where == "generating":
            where += " (first token)" if not stats.get("newest_tokens") else " (decoding)"
        return f"late: {where}"
    return stats.get("last_null") or "null"


def make_project(base: Path) -> Path:
    project = base / "project"
    project.mkdir()
    for name in ("prompt.py", "bm25.py", "cochange.py", "graph.py", "explain.py", "store.py"):
        shutil.copy(ROOT / "context" / name, project / name)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "."], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "sample"], cwd=project, check=True)
    return project


def position(text: str, offset: int) -> dict:
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return {"line": line, "character": len(text[start:offset].encode("utf-16-le")) // 2}


class Editor:
    """One server, the documents as the editor holds them, and the trace's measurements."""

    def __init__(self, conn: Connection, files: dict[str, str], result: Result) -> None:
        self.conn, self.docs, self.result = conn, dict(files), result
        self.versions = {uri: 1 for uri in files}
        self.open_request: int | None = None

    def _late(self, future: asyncio.Future) -> None:
        """A request answered after its pause ended: the tokens it showed first were not seen."""
        if not future.cancelled() and ((future.result() or {}).get("result") or {}).get("items"):
            asyncio.ensure_future(self._count_late())

    async def _count_late(self) -> None:
        stats = (await self.conn.call("loopls/status"))["stats"]
        self.result.late_tokens += stats.get("last_answer_tokens", 0)

    def _empty_case(self, stats: dict, uri: str, cursor: int, shown: str | None = None) -> None:
        """Note where a pause got a null "empty" answer, or (`shown`) an answer whose greedy text
        post-processing dropped and another first token's replaced (the server's `last_replaced`),
        with the candidate the server dropped (its newest one, if it dropped one since the
        previous pause: else a secret-looking one)."""
        dropped = (stats.get("waste") or {}).get("dropped") or {}
        total, new = sum(dropped.values()), None
        if total > self.result.dropped_seen:
            new = ((stats.get("waste") or {}).get("dropped_last") or [None])[-1]
        self.result.dropped_seen = total
        replaced = stats.get("last_replaced")  # the newest request's answer replaced a dropped text
        if (shown is None and stats.get("last_null") != "empty") or (shown is not None and not replaced):
            return
        text = self.docs[uri]
        start = text.rfind("\n", 0, cursor) + 1
        end = text.find("\n", cursor)
        end = len(text) if end < 0 else end
        following = text[end + 1:].split("\n", 1)[0]
        self.result.empty_cases.append({
            "pause": self.result.pauses, "line": text[start:cursor] + "‸" + text[cursor:end], "next": following,
            "step": new[0] if new else "?", "model": replaced or (new[2] if new else "?"), "shown": shown})

    def edit(self, uri: str, start: int, end: int, new: str) -> None:
        text = self.docs[uri]
        self.versions[uri] += 1
        self.conn.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": self.versions[uri]},
            "contentChanges": [{"range": {"start": position(text, start), "end": position(text, end)}, "text": new}]})
        self.docs[uri] = text[:start] + new + text[end:]

    def keystroke(self, uri: str, cursor: int) -> tuple[int, asyncio.Future]:
        if self.open_request is not None:
            self.conn.notify("$/cancelRequest", {"id": self.open_request})
        msg_id, future = self.conn.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": position(self.docs[uri], cursor), "context": {"triggerKind": 2}})
        self.open_request = msg_id
        future.add_done_callback(lambda _f, i=msg_id: setattr(self, "open_request", None)
                                 if self.open_request == i else None)
        return msg_id, future

    async def burst(self, gaps: list[float], uri: str, cursor: int, keys: list[str | None]
                    ) -> tuple[int, float, asyncio.Future]:
        """Type `keys` (None is a backspace) at `cursor`, `gaps` (s) apart; the cursor, the
        time of the last key and the last request."""
        future = last = None
        for key, gap in zip(keys, gaps):
            if key is None:
                self.edit(uri, cursor - 1, cursor, "")
                cursor -= 1
            else:
                self.edit(uri, cursor, cursor, key)
                cursor += 1
            _, future = self.keystroke(uri, cursor)
            last = time.perf_counter()
            await asyncio.sleep(gap)
        return cursor, last, future

    async def pause(self, pause: float, uri: str, cursor: int, last_key: float, future: asyncio.Future) -> str | None:
        """Wait out a pause of `pause` s; the suggestion shown during it (the text after the
        cursor), if any."""
        remaining = last_key + pause - time.perf_counter()
        try:
            reply = await asyncio.wait_for(asyncio.shield(future), max(remaining, 0.0))
        except asyncio.TimeoutError:
            reply = None
        self.result.pauses += 1
        items = ((reply or {}).get("result") or {}).get("items") if reply else None
        if not items:
            late = not future.done()
            await asyncio.sleep(max(0.0, last_key + pause - time.perf_counter()))
            status = await self.conn.call("loopls/status")
            self.result.empty_pause(late, pause, status["stats"], status.get("engine", {}))
            if not late:
                self._empty_case(status["stats"], uri, cursor)
            if late:  # its answer, should it come before the next keystroke, was not seen
                future.add_done_callback(lambda f: self._late(f))
            return None
        arrived = time.perf_counter()
        self.result.shown += 1
        self.result.latencies.append((arrived - last_key) * 1000)
        before = self.result.status.get("cache_hits", 0)
        stats = (await self.conn.call("loopls/status"))["stats"]
        if stats["cache_hits"] == before:  # generated for this pause: its tokens were useful
            if "shown_tokens" not in stats:  # a server that counts them: see `measure`
                self.result.useful_tokens += stats["last_generated_tokens"]
            self.result.generated.append((arrived - last_key) * 1000)
            if stats.get("last_engine"):  # a server that reports its phases
                self.result.phases.append({**stats["last_engine"], **stats.get("last_timings_ms", {}),
                                           "latency": round((arrived - last_key) * 1000), "pause": round(pause * 1000),
                                           "shape": f"{items[0]['insertText'].count(chr(10)) + 1} line(s), "
                                                    f"{len(items[0]['insertText'])} chars"})
        self.result.status = stats
        self._empty_case(stats, uri, cursor, items[0]["insertText"])
        await asyncio.sleep(max(0.0, last_key + pause - time.perf_counter()))
        item = items[0]
        start = item.get("range", {}).get("start", position(self.docs[uri], cursor))
        line_start = self.docs[uri].rfind("\n", 0, cursor) + 1
        typed = cursor - line_start - start["character"] if start["line"] == self.docs[uri].count("\n", 0, cursor) else 0
        return item["insertText"][max(typed, 0):]


def code_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if 12 <= len(line.strip()) <= 50 and line.isascii()]


async def run_trace(editor: Editor, args: argparse.Namespace) -> None:
    uris = sorted(editor.docs)
    shown: str | None = None
    uri, cursor = uris[0], 0
    for n in range(args.bursts):
        rng = random.Random(f"{args.seed}/{n}")  # this burst's own draws: the same for every server
        through, typed = rng.random() < 0.4, rng.randint(1, 8)
        pause = rng.uniform(0.3, 1.5)
        gaps = [rng.uniform(0.06, 0.2) for _ in range(40)]  # more than a burst's keys
        first = (shown or "").split("\n", 1)[0]
        if first and through:  # type through what is shown
            keys = list(first[:min(typed, len(first))])
        else:
            uri = rng.choice(uris)
            text = editor.docs[uri]
            lines = [i for i, line in enumerate(text.split("\n")[:-1]) if line.strip()]
            row = rng.choice(lines)
            lines_of = text.split("\n")
            line_end = sum(len(line) + 1 for line in lines_of[:row + 1]) - 1
            indent = len(lines_of[row]) - len(lines_of[row].lstrip())
            editor.edit(uri, line_end, line_end, "\n" + " " * indent)  # a new line after a random line
            cursor = line_end + 1 + indent
            snippet = rng.choice(code_lines(text))[:rng.randint(6, 30)]
            keys: list[str | None] = list(snippet)
            if rng.random() < 0.3:  # a typo: backspace a few characters and retype them
                cut = rng.randint(2, max(2, len(keys) - 1))
                wrong = rng.randint(1, 4)
                keys = keys[:cut] + [None] * wrong + keys[cut - wrong:]
        cursor, last_key, future = await editor.burst(gaps, uri, cursor, keys)
        shown = await editor.pause(pause, uri, cursor, last_key, future)


# -- one server -----------------------------------------------------------------------------

async def measure(name: str, tree: Path, project: Path, cache: Path, args: argparse.Namespace,
                  options: dict) -> Result:
    env = {**os.environ, "LOOPLS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LAUNCHER, str(tree), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=env, cwd=project)
    conn = Connection(proc)
    result = Result(name)
    try:
        await conn.call("initialize", {"processId": os.getpid(), "rootUri": project.as_uri(), "capabilities": {},
                                       "initializationOptions": options})
        conn.notify("initialized", {})
        files = {p.as_uri(): p.read_text(encoding="utf-8") for p in sorted(project.glob("*.py"))}
        for uri, text in files.items():
            conn.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                                  "text": text}})
        deadline = time.monotonic() + 300
        while not (await conn.call("loopls/status"))["model"].get("loaded"):
            assert time.monotonic() < deadline, f"{name}: the model did not load"
            await asyncio.sleep(0.05)
        result.startup["loaded"] = time.perf_counter() - started
        for uri in files:  # warm: the first request of each file is not part of the trace
            await conn.call("textDocument/inlineCompletion", {"textDocument": {"uri": uri},
                            "position": {"line": 0, "character": 0}, "context": {"triggerKind": 1}})
            result.startup.setdefault("first", time.perf_counter() - started)
        editor = Editor(conn, files, result)
        result.status = (await conn.call("loopls/status"))["stats"]
        start_stats = dict(result.status)
        load_start = os.getloadavg()[0]
        await run_trace(editor, args)
        await asyncio.sleep(1.5)  # let cancelled requests finish their accounting
        end = (await conn.call("loopls/status"))["stats"]
        # counters become the trace's share; gauges (the last request's figures) stay as read
        result.status = _delta(end, start_stats)
        if "shown_tokens" in result.status:  # the server counts the tokens its answers showed
            result.useful_tokens = result.status["shown_tokens"] - result.late_tokens
        result.load = (load_start, os.getloadavg()[0])
        result.memory = resident_mb(proc.pid)
        await stop_server(conn, proc, 30)
    finally:
        await stop_server(conn, proc, graceful=False)
        conn.reader.cancel()
    return result


def resident_mb(pid: int) -> dict:
    """Resident memory (MB) of the process `pid` and of each process it started (Linux)."""
    def rss(p: str) -> float:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    out = {"server": rss(str(pid))}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else []
            if fields and int(fields[1]) == pid:
                kind = "engine" if b"spawn_main" in (entry / "cmdline").read_bytes() else "other"
                out[kind] = out.get(kind, 0.0) + rss(entry.name)
        except (OSError, ValueError):  # gone meanwhile
            continue
    return out


def _delta(end: dict, start: dict) -> dict:
    """Counters as the trace's share (nested ones too: the waste ledger); gauges as read."""
    return {k: (v - start.get(k, 0) if isinstance(v, (int, float)) and not _gauge(k)
                else _delta(v, start.get(k) or {}) if isinstance(v, dict) and not _gauge(k) else v)
            for k, v in end.items()}


def _gauge(stat: str) -> bool:
    """Status figures of the last or newest request, not running totals."""
    return stat.startswith(("last_", "newest", "cancel_ms", "tracked", "dropped_last"))


def source_tree(spec: str, work: Path) -> tuple[Path, str]:
    """A folder with a `loopls` package made of links to the tree's four folders."""
    path = Path(spec)
    label = spec
    if not (path / "lsp").is_dir():
        path = work / "before-worktree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), spec], check=True)
        label = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                               text=True, check=True).stdout.strip()
    tree = work / f"tree-{len(list(work.glob('tree-*')))}"
    (tree / "loopls").mkdir(parents=True)
    for package in PACKAGES:
        (tree / "loopls" / package).symlink_to(path.resolve() / package)
    return tree, label


def report(results: list[Result]) -> None:
    header = ("server", "pauses", "shown", "P50 ms", "P95 ms", "generated P50/P95", "cache hits", "typed through",
              "tokens", "wasted", "wasted (server)", "load avg")
    rows = []
    for r in results:
        def p(q: float, values: list[float]) -> str:
            ordered = sorted(values)
            return f"{ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]:.0f}" if ordered else "-"
        total = r.status.get("generated_tokens", 0)
        wasted = total - r.useful_tokens
        own = r.status.get("wasted_tokens")
        rows.append((r.name, str(r.pauses), f"{r.shown}/{r.pauses} ({100 * r.shown / max(r.pauses, 1):.0f}%)",
                     p(0.5, r.latencies), p(0.95, r.latencies),
                     f"{p(0.5, r.generated)}/{p(0.95, r.generated)} ({len(r.generated)})",
                     str(r.status.get("cache_hits", 0)), str(r.status.get("typed_through", "-")), str(total),
                     f"{wasted} ({100 * wasted / max(total, 1):.0f}%)",
                     f"{own} ({100 * own / max(total, 1):.0f}%)" if own is not None else "-",
                     f"{r.load[0]:.1f} -> {r.load[1]:.1f}"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


def phases(rows: list[dict]) -> str:
    """Medians of the server's phases over the generated suggestions (the engine's figures
    over those that waited for their whole generation: an early answer has none)."""
    whole = [row for row in rows if not row.get("early")]

    def med(key, over=rows) -> float:
        return statistics.median(key(row) for row in over) if over else 0.0
    per_token = sorted(row["decode_ms"] / (row["tokens"] - 1) for row in whole if row.get("tokens", 0) > 1)
    p90 = per_token[min(len(per_token) - 1, int(round(0.9 * (len(per_token) - 1))))] if per_token else 0
    return (f"phases of the {len(rows)} generated suggestions (medians; {len(rows) - len(whole)} answered early "
            f"with the lines written so far): debounce {med(lambda r: r['debounce']):.0f} ms, "
            f"first token {med(lambda r: r['ttft_ms'], whole):.0f} ms with "
            f"{med(lambda r: r['prompt_tokens'] - (r['cached_tokens'] or 0), whole):.0f} of "
            f"{med(lambda r: r['prompt_tokens']):.0f} prompt tokens computed, {med(lambda r: r['tokens']):.0f} tokens, "
            f"decode {statistics.median(per_token) if per_token else 0:.1f} ms per token (P90 {p90:.1f}, "
            f"{len(per_token)} suggestions of 2+ tokens), "
            f"generation {med(lambda r: r['generate']):.0f} ms")


def prompts(r: Result) -> str:
    """Where a new line's warm-up goes: the other files' part of the prompt against the file
    window, how often the kept part served a new line, the prefill rate, the short prompts."""
    counts = r.status.get("context") or {}
    made = sum(counts.get(k, 0) for k in ("same_line", "nearby", "chosen"))
    parts = []
    if made:
        parts.append(f"prompts {made}: other files {counts.get('context_tokens', 0) / made:.0f} tokens and file "
                     f"window {counts.get('window_tokens', 0) / made:.0f} on average; the other files' part kept on "
                     f"the same line {counts.get('same_line', 0)}, kept on a nearby line {counts.get('nearby', 0)}, "
                     f"chosen anew {counts.get('chosen', 0)} (of which on a new line of the same document and equal "
                     f"to the previous choice {counts.get('new_line_same', 0)})")
    done = r.status.get("warmups_finished")
    computed = r.status.get("warmup_prompt_tokens", 0) - r.status.get("warmup_cached_tokens", 0)
    if done and computed > 0:
        busy = r.status.get("warmup_ms", 0) - r.status.get("warmup_queue_ms", 0)
        parts.append(f"warm-ups computed {computed / done:.0f} tokens each, {1000 * busy / computed:.0f} ms per 1K "
                     f"tokens (queueing left out)")
    if "quick" in r.status:
        parts.append(f"answered from the short prompt {r.status['quick']}")
    return "; ".join(parts) or "(no prompt figures from this server)"


def slowest(rows: list[dict], count: int = 5) -> str:
    """Where the slowest generated suggestions spent their time (the P95's pauses)."""
    ordered = sorted(rows, key=lambda row: -row["latency"])[:count]
    return "; ".join(f"{row['latency']} ms of a {row['pause']} ms pause: debounce {row.get('debounce', '?')}, prompt "
                     f"and warm-up {row.get('prepare_wait', '?')}, generation {row.get('generate', '?')} (first token "
                     f"{row.get('ttft_ms', '?')}, "
                     f"{row['prompt_tokens'] - (row['cached_tokens'] or 0) if 'cached_tokens' in row else '?'} of "
                     f"{row['prompt_tokens']} prompt tokens computed, {row.get('tokens', '?')} tokens"
                     + (f", decode {row['decode_ms'] / (row['tokens'] - 1):.1f} ms per token" if row.get("tokens", 0) > 1
                        and "decode_ms" in row else "")
                     + (", answered early" if row.get("early") else "") + f"; shown: {row.get('shape', '?')})"
                     for row in ordered if "latency" in row)


def waste(r: Result) -> str:
    """The wasted tokens by reason (the server's ledger), and those of generations that ran
    to their end but were not shown (the answer came after the pause ended)."""
    ledger = dict(r.status["waste"])
    cancel_ms = ledger.pop("cancel_ms", None)
    dropped, samples = ledger.pop("dropped", None), ledger.pop("dropped_last", None)
    parts = [f"{why} {t['tokens']} tokens / {t['generations']} generations"
             + (f" ({t['before_first']} before their first token, {t['after_cancel']} tokens after the cancel)"
                if "before_first" in t and why not in ("empty", "rest", "rejected") else "")
             + (f" (after an early answer; {t['shown_later']} more shown later)" if why == "rest" else "")
             for why, t in ledger.items()]
    done = r.status.get("warmups_finished")
    timing = (f" ({done} finished, {r.status['warmup_ms'] / done:.0f} ms each on average, of which "
              f"{r.status['warmup_queue_ms'] / done:.0f} ms queued; {r.status['warmup_prompt_tokens'] / done:.0f} "
              f"tokens each, {r.status['warmup_cached_tokens'] / done:.0f} of them cached)") if done else ""
    parts.insert(0, f"warm-ups {r.status.get('warmup_tokens', 0)} tokens / {r.status.get('warmups', 0)}{timing}")
    unseen = (r.status.get("generated_tokens", 0) - r.useful_tokens - r.status.get("wasted_tokens", 0)
              - sum(ledger.get(why, {}).get("tokens", 0) for why in ("empty", "rest", "rejected")))
    parts.append(f"ran to the end but not shown in time {unseen} tokens")
    latency = (f"; cancel -> engine stopped, median {cancel_ms['p50']} ms, max {cancel_ms['max']} ms "
               f"(n = {cancel_ms['n']})") if cancel_ms else ""
    drops = (f"\n# {r.name}: candidates post-processing dropped, by step: {json.dumps(dropped)}; the last ones "
             f"(step, line before the cursor, model text): {json.dumps(samples)}") if dropped else ""
    return "wasted tokens by reason: " + "; ".join(parts) + latency + drops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="a commit, or a folder with a loopls source tree (none: only --after)")
    parser.add_argument("--after", default=str(ROOT), help="a folder with a loopls source tree (default: this one)")
    parser.add_argument("--bursts", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show-empty", action="store_true",
                        help="print each pause that showed nothing because post-processing dropped what the model "
                             "wrote: the cursor's line, the next line, the step and the model's text")
    parser.add_argument("--fim-layout", choices=("psm", "spm"),
                        help="completion.fimLayout of the servers (default: their own default)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="loopls-lsp-bench-"))
    worktree = None
    try:
        project = make_project(work)
        cache = work / "cache"
        servers, worktree = compared_trees(args.before, args.after, work)
        print(f"# {platform.node()}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
              f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}")
        print(f"# trace: {args.bursts} bursts, seed {args.seed}; before = {args.before or '(not run)'}, "
              f"after = {args.after}" + (f"; completion.fimLayout {args.fim_layout}" if args.fim_layout else ""))
        results = []
        for name, tree in servers:
            # a server older than the option ignores it (with a warning)
            options = {"completion": {"fimLayout": args.fim_layout}} if args.fim_layout else {}
            results.append(asyncio.run(measure(name, tree, project, cache, args, options)))
            subprocess.run(["git", "checkout", "-q", "."], cwd=project, check=True)
        report(results)
        for r in results:
            if r.latencies:
                print(f"# {r.name}: latency mean {statistics.mean(r.latencies):.0f} ms, "
                      f"max {max(r.latencies):.0f} ms; server stats {json.dumps(r.status, sort_keys=True)}")
            if r.phases:
                print(f"# {r.name}: {phases(r.phases)}")
                print(f"# {r.name}: the slowest generated suggestions: {slowest(r.phases)}")
            if "waste" in r.status:
                print(f"# {r.name}: {waste(r)}")
            print(f"# {r.name}: {prompts(r)}")
            if r.startup:
                print(f"# {r.name}: start-up: model loaded after {r.startup['loaded']:.1f} s, first completion "
                      f"after {r.startup.get('first', 0):.1f} s; resident memory after the trace: "
                      + ", ".join(f"{k} {v:.0f} MB" for k, v in r.memory.items()))
            if r.empty:
                late = ", ".join(f"{ms:.0f}" for ms in sorted(r.late_pauses))
                print(f"# {r.name}: pauses that showed nothing, by reason: {json.dumps(r.empty, sort_keys=True)}"
                      + (f"; the late ones' pauses (ms): {late}" if late else ""))
            if args.show_empty:
                for case in r.empty_cases:
                    print(f"# {r.name}: {'empty' if case['shown'] is None else 'replaced'} at pause {case['pause']}: "
                          f"{case['step']}; line {case['line']!r}, next line {case['next']!r}, model text "
                          f"{case['model']!r}" + (f", shown {case['shown']!r}" if case["shown"] is not None else ""))
    finally:
        remove_work(work, worktree)


if __name__ == "__main__":
    main()
