"""Benchmark `loopls check`: a whole repository, then incremental re-checks of edited files.

    python bench/check_bench.py /work/fetched/pip [--edits 200] [--seed 0]

Prints one table: the full check (wall time per stage, files, lines, findings), the CLI end
to end (a fresh `loopls check` process, as CI runs it), and the incremental re-check of one
edited file (`ProjectChecker.check_file` with the edited text, as the language server does on
didChange): `--edits` edits, ten in a row to each of `--edits / 10` randomly chosen files (the
first check of each file, as on didOpen, is reported separately): P50, P95 and max.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from loopls.context.smells import ProjectChecker


def _edit(text: str, rng: random.Random) -> str:
    """A typing-sized edit: a new statement line inserted after a random line."""
    lines = text.split("\n")
    at = rng.randrange(len(lines))
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    return "\n".join(lines[: at + 1] + [f"{indent}x_{rng.randrange(1000)} = 1"] + lines[at + 1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path, help="a repository to check (outside the loopls checkout)")
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = args.repo.resolve()
    if not root.is_dir():
        print(f"check_bench: {root} is not a folder", file=sys.stderr)
        return 2

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "loopls.lsp", "check", str(root), "--format", "json",
                           "-o", os.devnull], capture_output=True, text=True)
    cli_s = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        print(proc.stderr, file=sys.stderr)
        return 2

    checker = ProjectChecker(root)
    report = checker.check()
    rng = random.Random(args.seed)
    paths = sorted(checker.files)
    opens, times = [], []
    for _ in range(max(1, args.edits // 10)):  # open a file, then type into it ten times
        path = rng.choice(paths)
        text = checker.files[path].source.decode("utf-8", "replace")
        t = time.perf_counter()
        checker.check_file(path, text)
        opens.append((time.perf_counter() - t) * 1000)
        for _ in range(10):
            text = _edit(text, rng)
            t = time.perf_counter()
            checker.check_file(path, text)
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    print(f"repository: {root} ({report.files} files, {report.lines} lines, {len(report.findings)} findings)")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print("| measurement | value |")
    print("|---|---|")
    print(f"| `loopls check` CLI, fresh process, end to end | {cli_s:.2f} s |")
    for stage, seconds in report.timings.items():
        print(f"| full check: {stage} | {seconds:.2f} s |")
    print(f"| first check of a file opened in the editor, {len(opens)} files: P50 | {statistics.median(opens):.1f} ms |")
    print(f"| incremental re-check of one edited file, {len(times)} edits: P50 | {statistics.median(times):.1f} ms |")
    print(f"| incremental re-check: P95 | {p95:.1f} ms |")
    print(f"| incremental re-check: max | {times[-1]:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
