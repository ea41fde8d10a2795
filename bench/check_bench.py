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


def radon_agreement(checker: ProjectChecker) -> tuple[int, int, float, float] | None:
    """(functions, exact McCabe agreements, radon seconds, loopls seconds) on the Python files."""
    try:
        from radon.complexity import cc_visit
    except ImportError:
        return None
    from loopls.context.smells import analyze_tree

    def flatten(blocks, out):
        for b in blocks:
            if hasattr(b, "methods"):
                flatten(b.methods, out)
                flatten(b.inner_classes, out)
            else:
                out[(b.lineno, b.name)] = b.complexity
                flatten(b.closures, out)
        return out

    total = agree = 0
    radon_s = ours_s = 0.0
    parser = checker.languages.parser("python")
    for path, state in checker.files.items():
        if state.lang != "python":
            continue
        text = state.source.decode("utf-8", "replace")
        t = time.perf_counter()
        try:
            expected = flatten(cc_visit(text), {})
        except (SyntaxError, ValueError):
            continue
        radon_s += time.perf_counter() - t
        t = time.perf_counter()
        ours = {(f.start[0] + 1, f.name): f.cyclomatic
                for f in analyze_tree(path, "python", parser.parse(state.source)).functions}
        ours_s += time.perf_counter() - t
        total += len(expected)
        agree += sum(ours.get(k) == v for k, v in expected.items())
    return total, agree, radon_s, ours_s


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
    radon = radon_agreement(checker)
    if radon:
        total, agree, radon_s, ours_s = radon
        print(f"| Python McCabe per function, exact agreement with radon | {agree}/{total} "
              f"({100 * agree / max(total, 1):.2f}%) |")
        print(f"| radon cc_visit on the Python files / loopls parse + metrics | {radon_s:.2f} s / {ours_s:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
