"""Two models' completion results side by side, paired over the targets both have.

    python bench/compare_completion.py A.jsonl B.jsonl [--with-context]
    python bench/compare_completion.py A.jsonl --lift "file only 2K"

A and B are results files of `bench/eval_completion.py` (a model's DIR/<model>.jsonl; its
shards' files are read with it). Per kind and setting: the targets both models have, each
model's exact match and edit similarity (mean ± standard error), and B minus A with the
standard error of the paired difference (the same targets, so the targets' own difficulty
cancels out: a difference beyond about two of them is more than sampling noise).
With `--lift BASE`, one model's every other setting minus setting BASE on the same targets
(what cross-file context adds at each budget over the file alone).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_completion import KINDS, _records  # noqa: E402


def _mean_se(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0)


def with_context(a: list[dict]) -> set[str]:
    """Targets whose loopls prompt (any budget) differs in length from the file-only one."""
    tokens = {(r["case"], r["setting"]): r.get("prompt_tokens") for r in a}
    return {case for (case, setting), n in tokens.items()
            if setting.startswith("loopls ") and n != tokens.get((case, "file only " + setting[7:]), n)}


def compare(a: list[dict], b: list[dict]) -> list[str]:
    """Markdown rows: kind, setting, targets, A and B exact match and edit similarity, B - A."""
    index_a = {(r["case"], r["setting"]): r for r in a}
    index_b = {(r["case"], r["setting"]): r for r in b}
    both = sorted(set(index_a) & set(index_b))
    lines = ["| kind, setting (targets) | A EM | B EM | B - A EM | A ES | B ES | B - A ES |",
             "|---|---|---|---|---|---|---|"]
    settings = sorted({s for _, s in both})
    for kind in KINDS:
        for setting in settings:
            keys = [k for k in both if k[1] == setting and index_a[k]["kind"] == kind]
            if not keys:
                continue
            cells = [f"{kind}, {setting} ({len(keys)})"]
            for field, fmt in (("em", "{:.1%} ± {:.1%}"), ("es", "{:.3f} ± {:.3f}")):
                xa = [float(index_a[k][field]) for k in keys]
                xb = [float(index_b[k][field]) for k in keys]
                diff = [y - x for x, y in zip(xa, xb)]
                cells += [fmt.format(*_mean_se(xa)), fmt.format(*_mean_se(xb)),
                          ("+" if statistics.fmean(diff) >= 0 else "") + fmt.format(*_mean_se(diff))]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def lift(a: list[dict], base: str) -> list[str]:
    """Markdown rows: kind, setting, targets, that setting's and BASE's exact match and edit
    similarity on the targets having both, and setting minus BASE (paired)."""
    index = {(r["case"], r["setting"]): r for r in a}
    lines = [f"| kind, setting (targets) | EM | {base} EM | difference | ES | {base} ES | difference |",
             "|---|---|---|---|---|---|---|"]
    for kind in KINDS:
        for setting in sorted({s for _, s in index} - {base}):
            cases = [c for c, s in index if s == setting and index[c, s]["kind"] == kind and (c, base) in index]
            if not cases:
                continue
            cells = [f"{kind}, {setting} ({len(cases)})"]
            for field, fmt in (("em", "{:.1%} ± {:.1%}"), ("es", "{:.3f} ± {:.3f}")):
                x = [float(index[c, setting][field]) for c in cases]
                y = [float(index[c, base][field]) for c in cases]
                diff = [u - v for u, v in zip(x, y)]
                cells += [fmt.format(*_mean_se(x)), fmt.format(*_mean_se(y)),
                          ("+" if statistics.fmean(diff) >= 0 else "") + fmt.format(*_mean_se(diff))]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="results of model A (DIR/<model>.jsonl)")
    ap.add_argument("b", type=Path, nargs="?", help="results of model B")
    ap.add_argument("--with-context", action="store_true", help="only targets given cross-file snippets")
    ap.add_argument("--lift", metavar="BASE", help="instead: model A's settings minus setting BASE, paired")
    args = ap.parse_args(argv)
    if args.lift:
        a = _records(args.a)
        if not any(r["setting"] == args.lift for r in a):
            raise SystemExit(f"no results for setting {args.lift!r} in {args.a}")
        print(f"A: {args.a}\n")
        print("\n".join(lift(a, args.lift)))
        return 0
    if args.b is None:
        ap.error("give B's results, or --lift BASE")
    a, b = _records(args.a), _records(args.b)
    if not a or not b:
        raise SystemExit(f"no results in {args.a if not a else args.b}")
    if args.with_context:
        keep = with_context(a)
        a, b = [r for r in a if r["case"] in keep], [r for r in b if r["case"] in keep]
    print(f"A: {args.a}\nB: {args.b}\n")
    print("\n".join(compare(a, b)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
