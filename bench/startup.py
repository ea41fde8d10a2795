"""Start-up of the language server: how long from starting `loopls lsp` over stdio to its answer
to `initialize`, and to the model being ready (`loopls/status` state "ready"), with the
default model on the CPU; and whether the server process had torch mapped at each point (its
engine runs in an engine process of its own, which imports torch itself).

    python bench/startup.py [--before COMMIT|PATH] [--after PATH] [--rounds 5]

`--before` measures another tree (a commit, checked out in a temporary git worktree, or a
folder holding a loopls source tree) in the same run, round by round alternately with the
after tree, so that both see the same machine load. Each round starts a fresh server in an
empty workspace folder, sends `initialize`, then `initialized`, then polls `loopls/status`
every 20 ms; the server is shut down before the next one starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsp_latency import LAUNCHER, ROOT, Connection, compared_trees, remove_work, stop_server


def torch_mapped(pid: int) -> bool:
    """Whether the process `pid` has torch's libraries mapped (Linux)."""
    try:
        return "/libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


async def start_once(tree: Path, project: Path, cache: Path) -> dict:
    env = {**os.environ, "LOOPLS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LAUNCHER, str(tree), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=env, cwd=project)
    conn = Connection(proc)
    out: dict = {}
    try:
        await conn.call("initialize", {"processId": os.getpid(), "rootUri": project.as_uri(), "capabilities": {}})
        out["initialize"] = time.perf_counter() - started
        out["torch_at_initialize"] = torch_mapped(proc.pid)
        conn.notify("initialized", {})
        deadline = time.monotonic() + 300
        while (status := await conn.call("loopls/status"))["state"] != "ready":
            assert status["state"] != "error", status
            assert time.monotonic() < deadline, f"the model did not load: {status}"
            await asyncio.sleep(0.02)
        out["ready"] = time.perf_counter() - started
        out["torch_at_ready"] = torch_mapped(proc.pid)
        await stop_server(conn, proc)
    finally:
        await stop_server(conn, proc, graceful=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="a commit, or a folder with a loopls source tree (none: only --after)")
    parser.add_argument("--after", default=str(ROOT), help="a folder with a loopls source tree (default: this one)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="loopls-startup-bench-"))
    worktree = None
    try:
        project = work / "project"
        project.mkdir()
        (project / "app.py").write_text("def area(r):\n    return 3.14 * r * r\n", encoding="utf-8")
        cache = work / "cache"
        servers, worktree = compared_trees(args.before, args.after, work)
        print(f"# {platform.node()}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
              f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}; "
              f"load average {os.getloadavg()[0]:.2f} at the start")
        runs: dict[str, list[dict]] = {name: [] for name, _ in servers}
        for round_ in range(args.rounds):
            for name, tree in servers:
                run = asyncio.run(start_once(tree, project, cache))
                runs[name].append(run)
                print(f"# round {round_ + 1} {name}: initialize {run['initialize']:.2f} s (torch in the server: "
                      f"{run['torch_at_initialize']}), ready {run['ready']:.2f} s (torch in the server: "
                      f"{run['torch_at_ready']}); load {os.getloadavg()[0]:.2f}", flush=True)
        print(f"# load average {os.getloadavg()[0]:.2f} at the end")
        print("| server | initialize, median (min-max) s | model ready, median (min-max) s | torch in the server "
              "at initialize / at ready |")
        print("|---|---|---|---|")
        for name, done in runs.items():
            def cell(key: str) -> str:
                values = [r[key] for r in done]
                return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
            torch_in = f"{sum(r['torch_at_initialize'] for r in done)}/{len(done)} / " \
                       f"{sum(r['torch_at_ready'] for r in done)}/{len(done)}"
            print(f"| {name} | {cell('initialize')} | {cell('ready')} | {torch_in} |")
    finally:
        remove_work(work, worktree)


if __name__ == "__main__":
    main()
