"""How long a code-action listing takes on the refactor thread: the deterministic refactors
at a selection, as `textDocument/codeAction` computes them.

    python bench/refactor_bench.py [FILE ...] [--samples 200] [--seed 0]

Default files: the standard library's `argparse.py` and `typing.py` (large, real Python).
For each file: P50, P95 and max milliseconds over `--samples` random positions of two kinds —
a cursor on an identifier (inline variable is tried) and a selected expression (extract
variable and function) — each as the light bulb asks (refactors only, edits verified later,
on resolve) and as a menu asks (everything, each edit verified now); then
`source.organizeImports`, verified. With how many refactors were offered and refused.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from loopls.context.languages import Languages, language_for_path
from loopls.context.refactor import Source, refactorings


def _positions(src: Source, rng: random.Random, samples: int) -> dict[str, list[tuple]]:
    identifiers, expressions = [], []
    for node in src.walk():
        if node.type == "identifier":
            identifiers.append(src.span(node))
        elif node.type in ("binary_operator", "call", "attribute", "binary_expression", "call_expression"):
            expressions.append(src.span(node))
    pick = lambda pool: [pool[rng.randrange(len(pool))] for _ in range(samples)] if pool else []  # noqa: E731
    names, exprs = pick(identifiers), pick(expressions)
    return {
        "name, light bulb": [(s, s, ["refactor"], False) for s, _ in names],
        "name, menu": [(s, s, None, True) for s, _ in names],
        "expression, light bulb": [(s, e, ["refactor"], False) for s, e in exprs],
        "expression, menu": [(s, e, None, True) for s, e in exprs],
        "organize imports": [(0, 0, ["source.organizeImports"], True)] * max(1, samples // 10),
    }


def bench(path: Path, samples: int, seed: int, languages: Languages) -> list[tuple]:
    text = path.read_text(encoding="utf-8")
    language = language_for_path(path)
    src = Source(text, language, languages)
    rows = []
    for kind, cases in _positions(src, random.Random(seed), samples).items():
        times, offered, refused = [], 0, 0
        for start, end, only, verified in cases:
            t0 = time.perf_counter()
            found = refactorings(text, str(path), start, end, languages, only, verified=verified)
            times.append((time.perf_counter() - t0) * 1000)
            offered += sum(r.reason is None for r in found)
            refused += sum(r.reason is not None for r in found)
        times.sort()
        rows.append((path.name, text.count("\n"), kind, len(times), statistics.median(times),
                     times[int(0.95 * (len(times) - 1))], times[-1], offered, refused))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    stdlib = Path(argparse.__file__).parent
    files = args.files or [stdlib / "argparse.py", stdlib / "typing.py"]
    languages = Languages()
    print(f"{'file':<14} {'lines':>6}  {'request':<24} {'n':>4} {'P50 ms':>8} {'P95 ms':>8} {'max ms':>8} "
          f"{'offered':>8} {'refused':>8}")
    for path in files:
        for name, lines, kind, n, p50, p95, worst, offered, refused in bench(path, args.samples, args.seed, languages):
            print(f"{name:<14} {lines:>6}  {kind:<24} {n:>4} {p50:>8.1f} {p95:>8.1f} {worst:>8.1f} "
                  f"{offered:>8} {refused:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
