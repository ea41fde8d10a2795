"""Model-free evaluation of the context engine on real repositories.

    python bench/context_eval.py REPO [REPO ...] [--targets 200] [--tokenizer DIR] [--json OUT]

For each repository (a git work tree with history):
1. cross-file recall: CrossCodeEval-style targets (bench/context_targets.py); the fraction
   whose gold definition is inside the packed prompt at each budget, for loopls and for the
   baselines run here with the same tokenizer, FIM window and packer: current file only, BM25
   over 10-line windows (the CrossCodeEval retriever) and random files;
2. history: for held-out later commits, rank the other files changed with the commit's first
   file, by co-change + graph and by recency alone (MRR, top-3 hit rate);
3. speed: cold indexing rate, update after a keystroke, context assembly, peak memory.

Token counts use the tiny checkpoint's tokenizer (vocabulary 512), made on first use; its
tokens per character are several times a real model's, so a budget here holds less code.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from context_targets import WindowBM25, hit, mine_targets, random_candidates  # noqa: E402

from loopls.context.assemble import ContextEngine  # noqa: E402
from loopls.context.cochange import CoChange  # noqa: E402
from loopls.context.documents import ParsedDocument  # noqa: E402
from loopls.context.history import read_history  # noqa: E402
from loopls.context.project import Project  # noqa: E402

BUDGETS = (2048, 8192, 32768, 131072)
GRAPH_WEIGHT = 0.1
TYPED_LINE = "result = compute(value, 2)"  # valid in every language here, or one error away  # PageRank (normalised to the best file) added to co-change confidence


def load_tokenizer(folder: str | None):
    from loopls.engine.model.tokenizer import Tokenizer

    if folder is None:  # made in a child process so that this one never imports torch
        folder = tempfile.mkdtemp(prefix="loopls-bench-tok-")
        subprocess.run([sys.executable, "-m", "loopls.lsp", "model", "create-tiny", folder], check=True,
                       capture_output=True)
    return Tokenizer.from_folder(Path(folder))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def recall(index: Project, engine: ContextEngine, targets, budgets, seed: int) -> tuple[dict, dict]:
    methods = ("loopls", "bm25-10-line", "random", "current-only")
    hits = {m: {b: 0 for b in budgets} for m in methods}
    times: dict[int, list[float]] = {b: [] for b in budgets}
    windows = WindowBM25(index)
    for n, target in enumerate(targets):
        index.update_document(target.path, target.text)  # the engine sees the blanked file
        base = {"bm25-10-line": windows.candidates(target), "random": random_candidates(index, target, seed + n),
                "current-only": []}
        for budget in budgets:
            t0 = time.perf_counter()
            packed = engine.assemble(target.path, target.text, target.offset, budget)
            times[budget].append(time.perf_counter() - t0)
            hits["loopls"][budget] += hit(packed.snippets, target)
            for method, cands in base.items():
                other = engine.packer.pack(cands, target.path, target.text, target.offset, budget, engine.read_lines)
                hits[method][budget] += hit(other.snippets, target)
        index.close_document(target.path)
    total = max(len(targets), 1)
    return ({m: {b: hits[m][b] / total for b in budgets} for m in methods},
            {b: (pct(t, 0.5), pct(t, 0.95)) for b, t in times.items()})


def history_eval(index: Project, engine: ContextEngine, held_out: int = 100) -> dict:
    commits = read_history(index.root, 5000)
    prefix = index.git_prefix
    results = {"cochange+graph": [], "cochange": [], "recency": []}
    tested = 0
    for i, commit in enumerate(commits):
        if tested >= held_out:
            break
        files = [f for f in commit.files if f.startswith(prefix)]
        if not 2 <= len(files) <= 30:
            continue
        past = CoChange(commits[i + 1:])
        known = [f for f in files if f in past.last_changed]
        if len(known) < 2:
            continue
        query, gold = known[0], set(known[1:])
        tested += 1
        recency = past.by_recency()
        coupled = {c.path: c.confidence for c in past.coupled(query)}
        ranks = engine.signals.graph.pagerank({query[len(prefix):]: 1.0}) if query[len(prefix):] in index.files else {}
        top = max(ranks.values(), default=1.0) or 1.0
        position = {p: r for r, p in enumerate(recency)}
        pool = [p for p in recency if p != query]

        def score(p: str, graph_weight: float) -> tuple:
            graph = ranks.get(p[len(prefix):], 0.0) / top
            return (-(coupled.get(p, 0.0) + graph_weight * graph), position[p])

        rankings = {
            "recency": pool,
            "cochange": sorted(pool, key=lambda p: score(p, 0.0)),
            "cochange+graph": sorted(pool, key=lambda p: score(p, GRAPH_WEIGHT)),
        }
        for method, ranking in rankings.items():
            first = next((r for r, p in enumerate(ranking, 1) if p in gold), None)
            results[method].append((1 / first if first else 0.0, bool(first and first <= 3)))
    return {m: {"mrr": statistics.fmean(r[0] for r in v) if v else float("nan"),
                "top3": statistics.fmean(r[1] for r in v) if v else float("nan"), "n": len(v)}
            for m, v in results.items()}


def speed(root: Path) -> dict:
    cold = Project(root)  # no cache: every file read and parsed
    summary = cold.build()
    with tempfile.TemporaryDirectory() as cache:
        Project(root, Path(cache)).build()
        t0 = time.perf_counter()
        warm = Project(root, Path(cache)).build()
        warm_s = time.perf_counter() - t0
    path = max((p for p, s in cold.files.items() if s.language), key=lambda p: len(cold.text(p) or ""))
    text = cold.text(path)
    doc = ParsedDocument(path, text, cold.languages)
    cold.update_document(path, text, doc.symbols())
    # Type as a user does: after a non-blank line in the middle of the file, a new line at
    # the same indentation, then a statement character by character, line after line.
    at = text.find("\n", len(text) // 2)
    while at > 0 and not text[text.rfind("\n", 0, at) + 1:at].strip():
        at = text.find("\n", at + 1)
    line = text[text.rfind("\n", 0, at) + 1:at]
    indent = line[: len(line) - len(line.lstrip())]
    typed = ("\n" + indent + TYPED_LINE) * 10
    reparse, update = [], []
    for i in range(200):
        t0 = time.perf_counter()
        doc.edit(at + i, at + i, typed[i])
        doc.reparse()
        t1 = time.perf_counter()
        cold.update_document(path, doc.text, doc.symbols())
        t2 = time.perf_counter()
        reparse.append(t1 - t0)
        update.append(t2 - t0)
    return {"files": summary.files, "mb": summary.bytes / 1e6, "cold_s": summary.seconds,
            "cold_mb_s": summary.bytes / 1e6 / summary.seconds, "warm_s": warm_s, "keystroke_file": path,
            "keystroke_file_kb": len(text.encode()) / 1e3,
            "reparse_ms": (pct(reparse, 0.5) * 1e3, pct(reparse, 0.95) * 1e3),
            "update_ms": (pct(update, 0.5) * 1e3, pct(update, 0.95) * 1e3)}


def evaluate(root: Path, tokenizer, count: int, budgets, seed: int, speed_only: bool = False) -> dict:
    if speed_only:
        return {"repo": root.name, "speed": speed(root)}
    index = Project(root)
    index.build()
    engine = ContextEngine(index, tokenizer, tokenizer.special)
    targets = mine_targets(index, count, seed)
    rec, times = recall(index, engine, targets, budgets, seed)
    return {"repo": root.name, "targets": len(targets), "recall": rec, "assembly_s": times,
            "history": history_eval(index, engine), "speed": speed(root),
            "commits": len(read_history(root))}


def report(r: dict) -> str:
    if "recall" not in r:
        return f"### {r['repo']} (speed only)\n\n" + "\n".join(speed_rows(r["speed"]))
    budgets = list(next(iter(r["recall"].values())))
    rows = [f"### {r['repo']} ({r['targets']} targets, {r['commits']} commits)", "",
            "| retriever | " + " | ".join(f"{b // 1024}K" for b in budgets) + " |",
            "|---|" + "---:|" * len(budgets)]
    for method, by_budget in r["recall"].items():
        rows.append(f"| {method} | " + " | ".join(f"{100 * v:.1f}%" for v in by_budget.values()) + " |")
    rows += ["", "| history ranking | MRR | top-3 | commits |", "|---|---:|---:|---:|"]
    for method, h in r["history"].items():
        rows.append(f"| {method} | {h['mrr']:.3f} | {100 * h['top3']:.1f}% | {h['n']} |")
    rows += [""] + speed_rows(r["speed"])
    rows.append("- context assembly P50 / P95: " + ", ".join(
        f"{b // 1024}K {t[0] * 1e3:.0f} / {t[1] * 1e3:.0f} ms" for b, t in r["assembly_s"].items()))
    return "\n".join(rows)


def speed_rows(s: dict) -> list[str]:
    return [f"- cold index: {s['files']} files, {s['mb']:.2f} MB in {s['cold_s']:.2f} s = "
            f"**{s['cold_mb_s']:.1f} MB/s**; re-open from cache {s['warm_s'] * 1e3:.0f} ms",
            f"- keystroke in {s['keystroke_file']} ({s['keystroke_file_kb']:.0f} KB): tree.edit + reparse "
            f"P50 {s['reparse_ms'][0]:.2f} / P95 {s['reparse_ms'][1]:.2f} ms; with symbols + index update "
            f"P50 {s['update_ms'][0]:.2f} / P95 {s['update_ms'][1]:.2f} ms"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repos", nargs="+", type=Path)
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--tokenizer", default=None, help="checkpoint folder whose tokenizer counts tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--speed-only", action="store_true", help="only the speed measurements")
    args = parser.parse_args(argv)
    tokenizer = load_tokenizer(args.tokenizer)
    budgets = tuple(int(b) for b in args.budgets.split(","))
    results = []
    for repo in args.repos:
        result = evaluate(repo.resolve(), tokenizer, args.targets, budgets, args.seed, args.speed_only)
        results.append(result)
        print(report(result) + "\n", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS of the whole run): {peak:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "peak_rss_mb": peak}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
