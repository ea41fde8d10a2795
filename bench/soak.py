"""Soak: thousands of requests on a growing document; the server's RSS and latency drift.

    python bench/soak.py [--requests 10000] [--every 1000] [--lines 2000]

Starts the server over stdio as an editor does (embedded default model on CPU, smell checks
on), in a small git project, opens a Python document of `--lines` lines and types into it
like an editor: each keystroke is a `didChange` (a character; a new line every 40) followed
by an automatic inline completion request, cancelled by the next keystroke when still open.
Every 10th keystroke also pulls diagnostics, every 25th asks `loopls/status`, every 100th asks
explicitly (a generated suggestion, awaited). Keys go out as fast as the server answers,
with at most 8 requests open at once.

Prints, per `--every` requests: the server's RSS, the latency P50/P95/max of the requests
answered in that window (explicit ones apart), and the server's tracked structure sizes
(`loopls/status` stats.tracked: per-document state, requests in flight, queued work), which
must not grow with the number of requests. Goal: RSS flat within 10% from the first window
to the last. `run_soak` is also what the CI soak test calls, with a small budget.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lsp_latency import Connection, position, source_tree  # noqa: E402 - the benches' one client
from worst_latency import _rss_mb, make_project, percentile, started_server, varied_source  # noqa: E402

MAX_OPEN = 8
TYPED = "total = compute(items, limit) + offset  # x"


@dataclass
class Window:
    requests: int
    rss_mb: int
    latencies: list[float] = field(default_factory=list)
    explicit: list[float] = field(default_factory=list)
    tracked: dict = field(default_factory=dict)
    errors: int = 0
    collector: dict | None = None  # stats.gc: full collections so far and the longest (None: not reported)


async def soak(conn: Connection, uri: str, text: str, requests: int, every: int, pid: int) -> list[Window]:
    windows: list[Window] = []
    current = Window(0, _rss_mb(pid))
    open_ids: set[int] = set()
    last_inline: int | None = None
    version, cursor, sent = 1, len(text), 0

    def track(msg_id: int, future: asyncio.Future, window: Window, started: float, explicit: bool = False) -> None:
        open_ids.add(msg_id)

        def done(f: asyncio.Future) -> None:
            open_ids.discard(msg_id)
            (window.explicit if explicit else window.latencies).append(1000 * (time.perf_counter() - started))
            if "error" in f.result() and f.result()["error"].get("code") != -32800:  # -32800: cancelled
                window.errors += 1
        future.add_done_callback(done)

    keystroke = 0
    while sent < requests:
        while len(open_ids) >= MAX_OPEN:
            await asyncio.sleep(0.002)
        ch = "\n" if keystroke % 40 == 39 else TYPED[keystroke % len(TYPED)]
        keystroke += 1
        version += 1
        pos = position(text, cursor)
        conn.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": [
            {"range": {"start": pos, "end": pos}, "text": ch}]})
        text = text[:cursor] + ch + text[cursor:]
        cursor += 1
        if last_inline is not None and last_inline in open_ids:
            conn.notify("$/cancelRequest", {"id": last_inline})
        batch = [("textDocument/inlineCompletion", {"textDocument": {"uri": uri}, "position": position(text, cursor),
                                                    "context": {"triggerKind": 2}})]
        if keystroke % 10 == 0:
            batch.append(("textDocument/diagnostic", {"textDocument": {"uri": uri}}))
        if keystroke % 25 == 0:
            batch.append(("loopls/status", None))
        for method, params in batch:
            started = time.perf_counter()
            msg_id, future = conn.request(method, params)
            track(msg_id, future, current, started)
            if method == "textDocument/inlineCompletion":
                last_inline = msg_id
            sent += 1
        if keystroke % 100 == 0:
            started = time.perf_counter()
            msg_id, future = conn.request("textDocument/inlineCompletion", {
                "textDocument": {"uri": uri}, "position": position(text, cursor), "context": {"triggerKind": 1}})
            track(msg_id, future, current, started, explicit=True)
            await future
            sent += 1
        if sent // every > len(windows) and sent >= (len(windows) + 1) * every:
            while open_ids:  # let the window's requests finish before sampling
                await asyncio.sleep(0.01)
            stats = await _settled(conn)
            current.tracked, current.collector = stats["tracked"], stats.get("gc")
            current.requests, current.rss_mb = sent, _rss_mb(pid)
            windows.append(current)
            current = Window(0, 0)
    return windows


async def _settled(conn, limit_s: float = 10.0) -> dict:
    """The server's stats once the work the window's requests left behind has run: a
    generation may run on after its answer (an automatic block answered with its first
    lines) and hold the project thread's queued work until it ends. What is still running
    or queued after `limit_s` is reported as it is: a leak never drains."""
    deadline = time.perf_counter() + limit_s
    while True:
        stats = (await conn.call("loopls/status"))["stats"]
        tracked = stats["tracked"]
        if (tracked.get("running", 0) == 0 and tracked.get("project_queue", 0) == 0) or time.perf_counter() > deadline:
            return stats
        await asyncio.sleep(0.05)


async def run_soak(project: Path, cache: Path, requests: int, every: int, lines: int,
                   tree: Path | None = None) -> list[Window]:
    """Start a server in `project` (this checkout's, or `tree`'s), soak it, shut it down; the
    windows measured."""
    async with started_server(project, cache, tree, {"textDocument": {"diagnostic": {}}}) as (conn, proc):
        uri = (project / "soak.py").as_uri()
        text = varied_source(lines)
        conn.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                              "text": text}})
        windows = await soak(conn, uri, text, requests, every, proc.pid)
    return windows


def table(windows: list[Window]) -> list[str]:
    rows = [("requests", "RSS MB", "P50 ms", "P95 ms", "max ms", "explicit P50 ms", "errors", "full GCs (longest ms)",
             "tracked (non-zero)")]
    for w in windows:
        tracked = ", ".join(f"{k} {v}" for k, v in sorted(w.tracked.items()) if v)
        gc = f"{w.collector['fullCollections']} ({w.collector['longestFullMs']:.0f})" if w.collector else "-"
        rows.append((f"{w.requests:,}", str(w.rss_mb), f"{percentile(w.latencies, 0.5):.1f}",
                     f"{percentile(w.latencies, 0.95):.1f}", f"{max(w.latencies):.1f}",
                     f"{percentile(w.explicit, 0.5):.0f}" if w.explicit else "-", str(w.errors), gc, tracked))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=2000, help="lines of the document at the start")
    parser.add_argument("--tree", help="the server from this commit or loopls source folder (default: this checkout)")
    args = parser.parse_args()
    print(f"# {platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, python {platform.python_version()}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="loopls-soak-") as work:
        cache = Path(os.environ.get("LOOPLS_CACHE_DIR", Path(work) / "cache"))
        tree = None
        if args.tree:
            tree, label = source_tree(args.tree, Path(work))
            print(f"# server: {label}")
        windows = asyncio.run(run_soak(make_project(Path(work)), cache, args.requests, args.every, args.lines, tree))
    for line in table(windows):
        print(line)
    first, last = windows[0].rss_mb, windows[-1].rss_mb
    print(f"# RSS {first} -> {last} MB ({100 * (last - first) / first:+.1f}%), {time.perf_counter() - started:.0f} s, "
          f"load after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
