"""A language server ended while its engine process starts: tracebacks and left-over processes,
before and after, one run.

    python bench/exit_race.py [--before COMMIT] [--after PATH] [--runs 15] [--within 0 0.4]
                              [--ending shutdown-exit|exit|stdin]

Each run starts `loopls lsp` over stdio, sends `initialize` (the default model starts
loading: on a CPU in an engine process of its own) and ends the server at a random moment
`--within` seconds later: `shutdown` and `exit`, `exit` alone, or stdin closed. It then
waits for every process the server started (found by a mark in their environment) to end,
and reads the server's stderr, where those processes wrote too. Counted per tree: runs whose
stderr holds a traceback (EOFError: a child still reading its spawn data when the server
exited; BrokenPipeError: a child that loaded the model and sent "ready" to a server gone),
and runs where an engine process was still alive 1 s after the server's exit. The trees'
runs alternate. `--before` is a commit (a git worktree of it is made) or a source tree; a
tree whose server runs its engine on a thread has nothing to count.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lsp"))

from lsp_latency import ROOT, source_tree  # noqa: E402
from marked_processes import marked  # noqa: E402
from raw_lsp import RawServer  # noqa: E402


def engine_alive(mark: str) -> bool:
    for pid in marked(mark):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def one_run(tree: Path, project: Path, ending: str, delay: float) -> tuple[str, bool]:
    """(the kind of traceback on stderr or "", an engine process alive 1 s after the exit)."""
    mark = f"exit-race-{uuid.uuid4().hex}"
    env = dict(os.environ, PYTHONPATH=str(tree), LOOPLS_BENCH_MARK=mark)
    server = RawServer(env=env, cwd=project)
    try:
        server.initialize(project)
        time.sleep(delay)
        if ending == "shutdown-exit":
            server.request("shutdown", None, 60)
        if ending == "stdin":
            server.proc.stdin.close()
        else:
            server.notify("exit")
        server.proc.wait(60)
        time.sleep(1.0)
        alive = engine_alive(mark)
        deadline = time.monotonic() + 60
        while marked(mark) and time.monotonic() < deadline:
            time.sleep(0.1)
        text = server.stderr()
    finally:
        server.close()
    for kind in ("EOFError", "BrokenPipeError"):
        if kind in text:
            return kind, alive
    return ("other" if "Traceback" in text else ""), alive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="a commit, or a folder with a loopls source tree (none: only --after)")
    parser.add_argument("--after", default=str(ROOT), help="a folder with a loopls source tree (default: this one)")
    parser.add_argument("--runs", type=int, default=15, help="runs per tree")
    parser.add_argument("--within", type=float, nargs=2, default=(0.0, 0.4), metavar=("FROM", "TO"),
                        help="seconds after initialize at which the server is ended (uniform)")
    parser.add_argument("--ending", choices=("shutdown-exit", "exit", "stdin"), default="shutdown-exit")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="loopls-exit-race-"))
    rng = random.Random(args.seed)
    try:
        project = work / "project"
        project.mkdir()
        (project / "shapes.py").write_text("def area(r):\n    return 3.14 * r * r\n", encoding="utf-8")
        trees = []
        if args.before:
            before, label = source_tree(args.before, work)
            trees.append((f"before ({label})", before))
        trees.append(("after", source_tree(args.after, work)[0]))
        print(f"# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}; "
              f"{time.strftime('%Y-%m-%d %H:%M')}; load {os.getloadavg()[0]:.1f}")
        print(f"# {args.runs} runs per tree, ended by {args.ending} {args.within[0]}-{args.within[1]} s "
              f"after initialize, seed {args.seed}")
        results: dict[str, list[tuple[str, bool]]] = {name: [] for name, _ in trees}
        for _ in range(args.runs):
            delay = rng.uniform(*args.within)
            for name, tree in trees:
                results[name].append(one_run(tree, project, args.ending, delay))
        print("| tree | runs | with a traceback | EOFError | BrokenPipeError | other | engine process alive 1 s after exit |")
        print("|---|---|---|---|---|---|---|")
        for name, runs in results.items():
            kinds = [kind for kind, _ in runs]
            print(f"| {name} | {len(runs)} | {sum(bool(k) for k in kinds)} | {kinds.count('EOFError')} | "
                  f"{kinds.count('BrokenPipeError')} | {kinds.count('other')} | {sum(a for _, a in runs)} |")
        print(f"# load at the end {os.getloadavg()[0]:.1f}")
    finally:
        worktree = work / "before-worktree"
        if worktree.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
