"""Completion quality and CPU latency of a model on repositories it was not trained on.

    python bench/eval_completion.py REPO [REPO ...] [--model M ...] [--lines 120] [--blocks 60]
        [--budgets 2048,8192] [--latency 30] [--json OUT]

Targets, per repository (Python files; the same targets for every model and setting):
- line: CrossCodeEval's rule (bench/context_targets.py): a line that uses a name defined in
  another file it imports; the cursor where the line starts (after its indentation), the rest
  of the line removed. The model's first line is compared with the removed text;
- block: the indented body (1-8 lines) under a line ending in ":", removed; the cursor after
  the first body line's indentation (where an editor's auto-indent leaves it). The completion
  as the editor would show it is compared with the removed body.
Scores: exact match (after stripping surrounding whitespace) and edit similarity
(1 - Levenshtein distance / longer length).

Settings: "bare FIM" is the prompt without a workspace index (`loopls complete`, a file
outside any workspace): the buffer's FIM window alone; "file only" is the server's layout
(repository and path labels, FIM window) with no cross-file snippets; "loopls NK" is the
prompt the server sends with its context engine at that budget (index, signals, packer; the
edited file is an open document). "file only" against "loopls" isolates what the cross-file
snippets bring. Every completion goes
through the server's `Completer` (prompt layout, stop rules, post-processing). The baseline
copies, for a line, the line after the earlier line most similar to the one above the cursor,
and for a block the body under the most similar earlier line ending in ":".

Latency: a 1K-token prompt (loopls at budget 1024) at a line target is served once by the
serving engine the language server uses (paged KV, prefix cache) to warm it, then the next
keystroke (one more character typed) is timed from submit to the finished, cleaned item.

If the model folder has a manifest.json (the shipped default does), each repository's package
is checked against it: trained-on packages are refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from context_targets import mine_targets  # noqa: E402

from loopls.context.assemble import ContextEngine  # noqa: E402
from loopls.context.index import WorkspaceIndex  # noqa: E402
from loopls.context.prompt import build_fim_prompt, fim_token_ids  # noqa: E402
from loopls.engine.async_engine import AsyncEngine  # noqa: E402
from loopls.engine.loader import load_checkpoint  # noqa: E402
from loopls.engine.models import resolve_model_name  # noqa: E402
from loopls.engine.scheduler import SchedulerConfig  # noqa: E402
from loopls.lsp.completion import Completer  # noqa: E402
from loopls.lsp.engine_host import BLOCK_SIZE, pool_blocks  # noqa: E402
from loopls.lsp.options import CompletionOptions  # noqa: E402


@dataclass(frozen=True)
class Case:
    kind: str  # "line" | "block"
    path: str
    text: str  # the file with the target removed
    offset: int  # the cursor
    gold: str
    baseline: str


def similarity(a: str, b: str) -> float:
    """1 - Levenshtein(a, b) / max(len): 1.0 for equal strings."""
    if a == b:
        return 1.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))


def _best_earlier(lines: list[str], row: int, query: str, want=lambda s: True) -> int | None:
    best, score = None, 0.0
    for j in range(row):
        if lines[j].strip() and want(lines[j]):
            s = similarity(lines[j].strip(), query.strip())
            if s > score:
                best, score = j, s
    return best


def _block_body(lines: list[str], head: int) -> list[str]:
    indent = len(lines[head]) - len(lines[head].lstrip())
    body = []
    for ln in lines[head + 1:]:
        if ln.strip() and len(ln) - len(ln.lstrip()) <= indent:
            break
        body.append(ln)
    while body and not body[-1].strip():
        body.pop()
    return body


def line_cases(index: WorkspaceIndex, count: int, seed: int) -> list[Case]:
    out = []
    for t in mine_targets(index, count, seed):
        lines = (index.text(t.path) or "").split("\n")
        gold = lines[t.line].strip()
        above = next((lines[r] for r in range(t.line - 1, -1, -1) if lines[r].strip()), "")
        j = _best_earlier(lines, t.line - 1, above)
        out.append(Case("line", t.path, t.text, t.offset, gold, lines[j + 1].strip() if j is not None else ""))
    return out


def block_cases(index: WorkspaceIndex, count: int, seed: int) -> list[Case]:
    found = []
    for path in sorted(p for p in index.files if p.endswith(".py")):
        text = index.text(path) or ""
        lines = text.split("\n")
        starts = [0]
        for ln in lines:
            starts.append(starts[-1] + len(ln) + 1)
        for h, ln in enumerate(lines[:-1]):
            if not ln.rstrip().endswith(":") or ln.lstrip().startswith("#"):
                continue
            body = _block_body(lines, h)
            if not 1 <= len(body) <= 8 or not body[0].strip():
                continue
            first = h + 1
            cut = starts[first] + len(body[0]) - len(body[0].lstrip())
            end = starts[first + len(body) - 1] + len(body[-1])
            gold = text[cut:end]
            j = _best_earlier(lines, h, ln, lambda s: s.rstrip().endswith(":"))
            guess = "\n".join(_block_body(lines, j)).strip() if j is not None else ""
            found.append(Case("block", path, text[:cut] + text[end:], cut, gold, guess))
    random.Random(seed).shuffle(found)
    return found[:count]


def score(case: Case, prediction: str) -> tuple[bool, float]:
    if case.kind == "line":
        pred = prediction.split("\n", 1)[0].strip()
        return pred == case.gold.strip(), similarity(pred, case.gold.strip())
    pred = "\n".join(x.rstrip() for x in prediction.strip().split("\n"))
    gold = "\n".join(x.rstrip() for x in case.gold.strip().split("\n"))
    return pred == gold, similarity(pred, gold)


class Prompter:
    """Prompts exactly as the server builds them, with or without its context engine."""

    def __init__(self, completer: Completer, index: WorkspaceIndex) -> None:
        self.completer, self.index = completer, index
        tok = completer.lm.tokenizer
        self.engine = ContextEngine(index, tok, tok.special, history=False)

    def with_context(self, case: Case, mode: str) -> None:
        """mode: "bare" (no index), "file" (the server's layout, no snippets) or "loopls"."""
        def provide(tokenizer, text, offset, budget):
            if mode == "file":
                packed = self.engine.packer.pack([], case.path, text, offset, budget, self.engine.read_lines)
            else:
                packed = self.engine.assemble(case.path, text, offset, budget)
            return packed.token_ids, bool(packed.fim and packed.fim.truncated)

        self.completer.context = None if mode == "bare" else provide
        if mode == "loopls":  # the edited file is an open document: the index sees its buffer, not the disk
            self.index.update_document(case.path, case.text)

    def done(self, case: Case) -> None:
        self.completer.context = None
        self.index.close_document(case.path)


def run_settings(completer: Completer, index: WorkspaceIndex, cases: list[Case], budgets: list[int],
                 max_tokens: dict[str, int]) -> dict[str, list[tuple[bool, float]]]:
    prompter = Prompter(completer, index)
    first = f"{budgets[0] // 1024}K"
    settings = [(f"bare FIM {first}", budgets[0], "bare"), (f"file only {first}", budgets[0], "file")]
    settings += [(f"loopls {b // 1024}K", b, "loopls") for b in budgets]
    results: dict[str, list[tuple[bool, float]]] = {name: [] for name, _, _ in settings}
    for case in cases:
        for name, budget, mode in settings:
            prompter.with_context(case, mode)
            options = CompletionOptions(max_tokens=max_tokens[case.kind], context_tokens=budget)
            out = completer.complete(case.text, case.offset, options)
            prompter.done(case)
            results[name].append(score(case, out.items[0] if out.items else ""))
    return results


async def _latency(completer: Completer, index: WorkspaceIndex, cases: list[Case], n: int) -> list[float]:
    lm = completer.lm
    prompter = Prompter(completer, index)
    options = CompletionOptions(context_tokens=1024)
    engine = AsyncEngine.from_loaded(lm, SchedulerConfig(num_blocks=pool_blocks(lm, 1024), block_size=BLOCK_SIZE))
    times = []
    async with engine:
        for case in cases[:n]:
            for typed in (0, 1):  # the keystroke before warms the cache; this one is timed
                text = case.text[:case.offset] + case.gold[:typed] + case.text[case.offset:]
                offset = case.offset + typed
                t0 = time.perf_counter()
                prompter.with_context(Case(case.kind, case.path, text, offset, case.gold, ""), "loopls")
                prepared = completer.prepare(text, offset, options)
                out = await engine.submit(prepared.ids, prepared.params, supersede="inline").result()
                completer.finish(out.token_ids, prepared.params, text, offset, options)
                elapsed = time.perf_counter() - t0
                prompter.done(case)
            times.append(elapsed)
    return times


def held_out_check(model_dir: Path, repo: Path) -> str:
    manifest = model_dir / "manifest.json"
    if not manifest.is_file():
        return "no manifest: not checked"
    data = json.loads(manifest.read_text())
    name = repo.name.lower()
    trained = {p.lower() for p in data.get("after_dedup", {})}
    held = {n for names in data["rules"]["held_out"].values() for n in names} | set(data["rules"]["held_out"])
    if name in trained:
        raise SystemExit(f"{repo}: package {name!r} is in the training corpus ({manifest}); choose a held-out one")
    return f"held out ({'listed in the manifest rules' if name in held else 'absent from the manifest'})"


def _row(name: str, scores: list[tuple[bool, float]]) -> str:
    em = 100 * sum(e for e, _ in scores) / max(len(scores), 1)
    es = statistics.fmean(s for _, s in scores) if scores else 0.0
    return f"| {name} | {len(scores)} | {em:.1f}% | {es:.3f} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repos", nargs="+", type=Path)
    ap.add_argument("--model", action="append", help="default: the shipped default model")
    ap.add_argument("--lines", type=int, default=120)
    ap.add_argument("--blocks", type=int, default=60)
    ap.add_argument("--budgets", default="2048,8192")
    ap.add_argument("--latency", type=int, default=30, help="timed keystrokes (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",")]
    cache = Path(tempfile.mkdtemp(prefix="loopls-eval-"))
    cases: dict[str, list[Case]] = {"line": [], "block": []}
    indexes = []
    for repo in args.repos:
        index = WorkspaceIndex(repo, cache)
        index.build()
        mine = line_cases(index, args.lines, args.seed), block_cases(index, args.blocks, args.seed)
        indexes.append((repo, index, mine))
        cases["line"] += mine[0]
        cases["block"] += mine[1]
    report = {"repos": [str(r) for r in args.repos], "models": {}}
    for name in args.model or [None]:
        folder = Path(resolve_model_name(name))
        for repo, _, _ in indexes:
            print(f"{repo}: {held_out_check(folder, repo)}", file=sys.stderr)
        completer = Completer(load_checkpoint(folder))
        per_kind: dict[str, dict[str, list]] = {}
        for kind, max_tokens in (("line", 48), ("block", 128)):
            merged: dict[str, list] = {}
            for repo, index, mine in indexes:
                own = mine[0] if kind == "line" else mine[1]
                t0 = time.perf_counter()
                for setting, s in run_settings(completer, index, own, budgets, {kind: max_tokens}).items():
                    merged.setdefault(setting, []).extend(s)
                print(f"{folder.name} {repo.name} {kind}: {len(own)} targets, {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr, flush=True)
            merged["baseline (similar earlier line)"] = [score(c, c.baseline) for c in cases[kind]]
            per_kind[kind] = merged
        latency = []
        if args.latency:
            for repo, index, mine in indexes:
                latency += asyncio.run(_latency(completer, index, mine[0], max(1, args.latency // len(indexes))))
        report["models"][folder.name] = {"scores": per_kind, "latency_s": latency}
        print(f"\nmodel {folder.name} ({folder})")
        for kind, merged in per_kind.items():
            print(f"\n{kind} completion\n\n| setting | targets | exact match | edit similarity |\n|---|---|---|---|")
            for setting, s in merged.items():
                print(_row(setting, s))
        if latency:
            p95 = statistics.quantiles(latency, n=20)[18] if len(latency) > 1 else latency[0]
            print(f"\nlatency to an inline result, 1K-token prompt, warm prefix cache, {args.threads} threads: "
                  f"P50 {statistics.median(latency) * 1000:.0f} ms, P95 {p95 * 1000:.0f} ms ({len(latency)} keystrokes)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
