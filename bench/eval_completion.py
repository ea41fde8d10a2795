"""Completion quality and CPU latency of a model on repositories it was not trained on.

    python bench/eval_completion.py REPO [REPO ...] [--model M ...] [--lines 30] [--line-starts 10] [--blocks 8]
        [--budgets 2048,8192] [--every 6] [--latency 5] [--out DIR] [--modes loopls,file,bare]
        [--layout auto,psm,spm,l2r] [--best-of K] [--latency-against K,...] [--shard I/N] [--tables-only]
        [--cpu-weights fp32|int8]

Results go to DIR/<model>.jsonl, one line per target and setting, and a rerun resumes there;
the tables count only targets that have every setting, so settings are compared pairwise.
`--shard I/N` takes every N-th target from the I-th (0-based) into DIR/<model>.shardIofN.jsonl,
so that N processes share the work; the tables read every shard's file.

Targets, per repository (Python files; the same targets for every model and setting):
- line: CrossCodeEval's rule (bench/context_targets.py): a line that uses a name defined in
  another file it imports; as in CrossCodeEval, the cursor goes right before that name's first
  use and the rest of the line is removed (the line's start stays in the prompt). The model's
  first line is compared with the removed text;
- line-start: the same lines with the cursor where the line starts (after its indentation):
  the whole statement is to be written, a harder task than CrossCodeEval's;
- block: the indented body (1-8 lines) under a line ending in ":", removed; the cursor after
  the first body line's indentation (where an editor's auto-indent leaves it). The completion
  as the editor would show it is compared with the removed body.
Scores: exact match (after stripping surrounding whitespace) and edit similarity
(1 - Levenshtein distance / longer length).

Settings: "bare FIM" is the prompt without a workspace index (`loopls complete`, a file
outside any workspace): the buffer's FIM window alone, labelled with the file name; "file only"
is the server's layout (repository and path labels, FIM window) with no cross-file snippets;
"loopls NK" is the prompt the server sends with its context engine at that budget (index,
signals, packer; the edited file is an open document). "file only" against "loopls" isolates
what the cross-file snippets bring. Every completion is asked of the server's completion
service (`lsp/completion/service.py`, the model loaded by `lsp/model_host.py`), as an automatic
(not invoked) request without the typing debounce: the same prompt layout, context packing,
secret redaction and prompt check, the same serving engine (paged KV, prefix cache), greedy
decoding (`completion.temperature` 0, the default), stop rules, early stop, post-processing
with the syntax tree and secret filter on the output. The modes differ only in the context
provider the service is given (none, the packer without snippets, the context engine). Each
target is a fresh document state: the service's suggestion cache is emptied after every
request. `seconds` in the results is the service's time for the request (the engine's prefix
cache stays warm across the settings of one target, as it would in the server). The baseline
copies, for a line, the line after the earlier line most similar to the one above the cursor,
and for a block the body under the most similar earlier line ending in ":".

Latency: a 1K-token prompt (loopls at budget 1024) at a line target is asked of the service
once to warm the engine's prefix cache, then the next keystroke (one more character typed) is
timed from the request to the finished, cleaned suggestion (the suggestion cache is emptied
first, so that the keystroke generates rather than being answered from it). With
`--latency-against`, each keystroke is timed once per `completion.lineBestOf` value in turn.

Decoding: greedy, as the server's default; `--best-of K` sets `completion.lineBestOf` (line
targets decode the K most likely first tokens as one batch and keep the best-scored line,
engine/backends/best_of.py); block targets are multi-line sites, always greedy.

`--cpu-weights int8` loads the model as `model.cpuWeights: int8` does (every linear layer and
the LM head quantized per output channel, engine/model/int8.py); its results go to the same
file name, so give it its own `--out` and compare the two folders' files with
`bench/compare_completion.py`.

If the model folder has a manifest.json (the shipped default does), each repository's package
is checked against it: trained-on packages are refused.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import random
import statistics
import sys
import tempfile
import time
import tokenize
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from context_targets import mine_targets  # noqa: E402

from loopls.context.symbols import IDENTIFIER  # noqa: E402

from loopls.context.assemble import ContextEngine  # noqa: E402
from loopls.context.languages import language_for_path  # noqa: E402
from loopls.context.packing import PackedContext, Packer  # noqa: E402
from loopls.context.project import Project  # noqa: E402
from loopls.engine.backends import CPU_WEIGHTS, BackendConfig  # noqa: E402
from loopls.engine.model.models import resolve_model_name  # noqa: E402
from loopls.lsp.completion.service import CompletionRequest, CompletionService  # noqa: E402
from loopls.lsp.model_host import ModelHost  # noqa: E402
from loopls.lsp.options import CompletionOptions  # noqa: E402


KINDS = ("line", "line-start", "block")


@dataclass(frozen=True)
class Case:
    kind: str  # one of KINDS
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


def _code_names(text: str) -> set[tuple[int, str]]:
    """(0-based line, name) of every Python name token: names used as code, not inside a
    docstring or comment."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return set()
    return {(tok.start[0] - 1, tok.string) for tok in tokens if tok.type == tokenize.NAME}


def line_cases(index: Project, count: int, seed: int, kind: str = "line") -> list[Case]:
    """`count` targets of `kind`: "line" (the cursor before the cross-file name, CrossCodeEval's
    split) or "line-start" (the cursor after the line's indentation)."""
    # CrossCodeEval's targets come from undefined names in code: none in docstrings or comments
    names: dict[str, set[tuple[int, str]]] = {}
    found = []
    for t in mine_targets(index, 10**9, seed):
        if t.path.endswith(".py") and t.path not in names:
            names[t.path] = _code_names(index.text(t.path) or "")
        if not t.path.endswith(".py") or (t.line, t.name) in names[t.path]:
            found.append(t)
    random.Random(seed).shuffle(found)
    out = []
    for t in sorted(found[:count], key=lambda t: (t.path, t.line)):
        text = index.text(t.path) or ""
        lines = text.split("\n")
        line = lines[t.line]
        indent = len(line) - len(line.lstrip())
        cut = indent
        if kind == "line":
            cut = next(m.start() for m in IDENTIFIER.finditer(line) if m.group(0) == t.name)
        start = t.offset - indent  # the line's first character
        typed = line[indent:cut]
        above = next((lines[r] for r in range(t.line - 1, -1, -1) if lines[r].strip()), "")
        j = _best_earlier(lines, t.line - 1, above)
        guess = lines[j + 1].strip() if j is not None else ""
        guess = guess[len(typed):] if typed and guess.startswith(typed) else guess
        blanked = text[:start + cut] + text[start + len(line):]
        out.append(Case(kind, t.path, blanked, start + cut, line[cut:].strip(), guess))
    return out


def block_cases(index: Project, count: int, seed: int) -> list[Case]:
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
            found.append((path, h, cut, end))
    random.Random(seed).shuffle(found)
    out = []
    for path, h, cut, end in found[:count]:  # the baseline only for the chosen (it is quadratic)
        text = index.text(path) or ""
        lines = text.split("\n")
        j = _best_earlier(lines, h, lines[h], lambda s: s.rstrip().endswith(":"))
        guess = "\n".join(_block_body(lines, j)).strip() if j is not None else ""
        out.append(Case("block", path, text[:cut] + text[end:], cut, text[cut:end], guess))
    return out


def score(case: Case, prediction: str) -> tuple[bool, float]:
    if case.kind != "block":
        pred = prediction.split("\n", 1)[0].strip()
        return pred == case.gold.strip(), similarity(pred, case.gold.strip())
    pred = "\n".join(x.rstrip() for x in prediction.strip().split("\n"))
    gold = "\n".join(x.rstrip() for x in case.gold.strip().split("\n"))
    return pred == gold, similarity(pred, gold)


class Service:
    """The server's completion service over one loaded model, once per prompt mode: "bare" (no
    context provider: the buffer alone), "file" (the server's layout without snippets) and
    "loopls" (the context engine, as the server's provider). The repositories' indexes are
    shared; documents are named by their file URI, as the server names them. The "l2r" layout
    is the packer's layout for a model without FIM tokens (the context, then the buffer up to
    the cursor, continued left to right): providers pack it with FIM ids switched off and the
    text after the cursor left out, so the whole budget goes to what precedes it."""

    def __init__(self, models: ModelHost, thread: ThreadPoolExecutor, tokenizer,
                 indexes: list[tuple[Path, Project]]) -> None:
        self.options = CompletionOptions()
        self.engines = {repo: ContextEngine(index, tokenizer, tokenizer.special) for repo, index in indexes}
        plain = dataclasses.replace(tokenizer.special, fim_prefix=None, fim_suffix=None, fim_middle=None)
        self.plain = {repo: Packer(tokenizer, plain, repo_name=index.root.name) for repo, index in indexes}
        self.label = Packer(tokenizer, plain)
        self.documents: dict[str, tuple[Path, str]] = {}  # uri -> repository, workspace-relative path
        self.left_to_right = False
        providers = {"bare": self._bare, "file": self._file_only, "loopls": self._loopls}
        self.services = {mode: CompletionService(models, thread, lambda: self.options, context=provide,
                                                 label=lambda p: Path(p).name if p else None, debounce=False)
                         for mode, provide in providers.items()}

    async def complete(self, repo: Path, case: Case, mode: str, options: CompletionOptions,
                       layout: str = "auto") -> tuple[str, int]:
        """The first suggestion's text ("" for none) and the prompt's length in tokens."""
        self.left_to_right = layout == "l2r"
        self.options = dataclasses.replace(options, fim_layout="auto" if self.left_to_right else layout)
        path = repo / case.path
        uri = path.resolve().as_uri()
        self.documents[uri] = (repo, case.path)
        service = self.services[mode]
        service.stats.last_engine = {}
        request = CompletionRequest(uri, None, str(path), language_for_path(path), case.text, case.offset,
                                    invoked=False)
        try:
            result = await service.complete(request)
        finally:
            service.forget(uri)  # the next request is another target: not answered from this one's cache
        if result is None:  # nothing to show (or the prompt was refused): the prompt's length if one ran
            return "", service.stats.last_engine.get("prompt_tokens", 0)
        return result.suggestions[0].text, result.prompt_tokens

    def _bare(self, tokenizer, uri: str, version: int | None, text: str, offset: int, budget: int,
              layout: str | None) -> PackedContext | None:
        if not self.left_to_right:
            return None  # the service's own buffer prompt
        return self.label.pack([], Path(self.documents[uri][1]).name, text[:offset], offset, budget, lambda _: None)

    def _file_only(self, tokenizer, uri: str, version: int | None, text: str, offset: int,
                   budget: int, layout: str | None) -> PackedContext:
        repo, path = self.documents[uri]
        engine = self.engines[repo]
        if self.left_to_right:
            return self.plain[repo].pack([], path, text[:offset], offset, budget, engine.read_lines)
        return engine.packer.pack([], path, text, offset, budget, engine.read_lines, layout)

    def _loopls(self, tokenizer, uri: str, version: int | None, text: str, offset: int,
                budget: int, layout: str | None) -> PackedContext | None:
        repo, path = self.documents[uri]
        engine = self.engines[repo]
        engine.index.update_document(path, text)  # an open document: the index sees its buffer, not the disk
        try:
            if self.left_to_right:
                cands = engine.candidates(path, text, offset)
                return self.plain[repo].pack(cands, path, text[:offset], offset, budget, engine.read_lines)
            return engine.assemble(path, text, offset, budget, layout)
        except (ValueError, OSError):  # as the server: a budget too small for labels, the buffer alone
            return None
        finally:
            engine.index.close_document(path)


MODES = {"loopls": "loopls", "file": "file only", "bare": "bare FIM"}


LAYOUTS = ("auto", "psm", "spm", "l2r")


Setting = tuple[str, int, str, str]  # name, budget, prompt mode, layout


def settings(budgets: list[int], modes: tuple[str, ...] = tuple(MODES), layouts: tuple[str, ...] = ("auto",)
             ) -> list[Setting]:
    """The settings on every target, most telling first: an interrupted run has those. Larger
    budgets (`larger`) run on a subset. What the server does by default adds nothing to the
    name: "auto" is the checkpoint's own FIM layout."""
    first = f"{budgets[0] // 1024}K"
    return [(f"{MODES[m]} {first}{_suffix(lay)}", budgets[0], m, lay) for lay in layouts for m in MODES if m in modes]


def larger(budgets: list[int], layouts: tuple[str, ...] = ("auto",)) -> list[Setting]:
    return [(f"loopls {b // 1024}K{_suffix(lay)}", b, "loopls", lay) for lay in layouts for b in budgets[1:]]


def _suffix(layout: str) -> str:
    return "" if layout == "auto" else f" {layout}"


def case_id(repo: Path, case: Case) -> str:
    return f"{repo.name}:{case.kind}:{case.path}:{case.offset}"


async def evaluate(service: Service, work: list[tuple[Path, Case]], budgets: list[int], results: Path,
                   every: int, modes: tuple[str, ...] = tuple(MODES), layouts: tuple[str, ...] = ("auto",),
                   shard: tuple[int, int] = (0, 1), best_of: int = 1) -> None:
    """Append one JSON line per (case, setting) to `results`, skipping those already there, so
    that an interrupted run resumes where it stopped. The larger budgets run on every
    `every`-th target of each repository and kind (their prompts cost several times more on a
    CPU)."""
    done = {(r["case"], r["setting"]) for r in _records(results)}
    max_tokens = {"line": 48, "line-start": 48, "block": 128}
    with results.open("a", encoding="utf-8") as sink:
        seen: dict[tuple[Path, str], int] = {}
        for k, (repo, case) in enumerate(work):
            n = seen[(repo, case.kind)] = seen.get((repo, case.kind), -1) + 1  # the case's place in its kind
            if k % shard[1] != shard[0]:
                continue
            chosen = settings(budgets, modes, layouts)
            chosen += larger(budgets, layouts) if n % every == 0 else []
            for name, budget, mode, layout in chosen:
                key = (case_id(repo, case), name)
                if key in done:
                    continue
                options = CompletionOptions(max_tokens=max_tokens[case.kind], context_tokens=budget, temperature=0.0,
                                            line_best_of=best_of)
                t0 = time.perf_counter()
                prediction, prompt_tokens = await service.complete(repo, case, mode, options, layout)
                em, es = score(case, prediction)
                sink.write(json.dumps({"case": key[0], "setting": name, "kind": case.kind, "em": em, "es": es,
                                       "prediction": prediction, "gold": case.gold, "prompt_tokens": prompt_tokens,
                                       "seconds": round(time.perf_counter() - t0, 2)}) + "\n")
                sink.flush()


def _records(results: Path) -> list[dict]:
    """The results of a model so far: its file and its shards' files (see --shard)."""
    base = results.name.split(".shard")[0].removesuffix(".jsonl")
    files = [results.parent / f"{base}.jsonl", *sorted(results.parent.glob(f"{base}.shard*of*.jsonl"))]
    return [json.loads(line) for f in files if f.is_file() for line in f.read_text().splitlines() if line]


def interleave(per_repo: list[tuple[Path, list[Case]]]) -> list[tuple[Path, Case]]:
    """Cases round-robin over repositories and kinds, so that a partial run covers them all."""
    queues = [[(repo, c) for c in cases if c.kind == kind]
              for repo, cases in per_repo for kind in KINDS]
    out = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def table(results: Path, cases: dict[str, Case], budgets: list[int], modes: tuple[str, ...] = tuple(MODES),
          layouts: tuple[str, ...] = ("auto",)) -> list[str]:
    """Markdown rows per kind over the targets that have every setting of a group (paired),
    with the baseline on the same targets: first the 2K settings on all targets, then the
    larger budgets beside 2K on their subset."""
    by_case: dict[str, dict[str, dict]] = {}
    for r in _records(results):
        by_case.setdefault(r["case"], {})[r["setting"]] = r
    lines = []
    base = [s[0] for s in settings(budgets, modes, layouts)]
    groups = [("", base)] + [(f", subset with {s[0]}", [s[0], *base[:2]]) for s in larger(budgets, layouts)]
    for kind in KINDS:
        for label, names in groups:
            full = [c for c, got in by_case.items()
                    if c in cases and cases[c].kind == kind and all(n in got for n in names)]
            lines += [f"\n{kind} completion{label} ({len(full)} targets)\n",
                      "| setting | exact match ± s.e. | edit similarity ± s.e. |", "|---|---|---|"]
            for n in names:
                lines.append(_row(n, [(by_case[c][n]["em"], by_case[c][n]["es"]) for c in full]))
            lines.append(_row("baseline (similar earlier line)", [score(cases[c], cases[c].baseline) for c in full]))
    return lines


async def _latency(service: Service, repo: Path, cases: list[Case], n: int, best_ofs: tuple[int, ...] = (1,)
                   ) -> dict[int, list[float]]:
    """Seconds from the request to the cleaned suggestion, per keystroke timed, for each
    `completion.lineBestOf` in `best_ofs`: they take turns on every keystroke, so that a
    machine's changing load weighs on each alike."""
    times: dict[int, list[float]] = {k: [] for k in best_ofs}
    for case in cases[:n]:
        for k in best_ofs:
            options = CompletionOptions(context_tokens=1024, temperature=0.0, line_best_of=k)
            for typed in (0, 1):  # the keystroke before warms the engine's prefix cache; this one is timed
                text = case.text[:case.offset] + case.gold[:typed] + case.text[case.offset:]
                t0 = time.perf_counter()
                await service.complete(repo, Case(case.kind, case.path, text, case.offset + typed, case.gold, ""),
                                       "loopls", options)
                elapsed = time.perf_counter() - t0
            times[k].append(elapsed)
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
    """Means with their standard errors (targets are a sample: one hit in 20 is 5 points)."""
    n = len(scores)
    em = sum(e for e, _ in scores) / max(n, 1)
    es = statistics.fmean(s for _, s in scores) if scores else 0.0
    em_se = (em * (1 - em) / n) ** 0.5 if n else 0.0
    es_se = statistics.stdev(s for _, s in scores) / n ** 0.5 if n > 1 else 0.0
    return f"| {name} | {100 * em:.1f}% ± {100 * em_se:.1f} | {es:.3f} ± {es_se:.3f} |"


def _shard(text: str) -> tuple[int, int]:
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit() and 0 <= int(i) < int(n)):
        raise argparse.ArgumentTypeError("a shard is I/N with 0 <= I < N, e.g. 0/2")
    return int(i), int(n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repos", nargs="+", type=Path)
    ap.add_argument("--model", action="append", help="default: the shipped default model")
    ap.add_argument("--lines", type=int, default=30, help="line targets (CrossCodeEval's split) per repository")
    ap.add_argument("--line-starts", type=int, default=10, help="line targets from the line's start per repository")
    ap.add_argument("--blocks", type=int, default=8, help="block targets per repository")
    ap.add_argument("--budgets", default="2048,8192", help="the first on every target, the others on a subset")
    ap.add_argument("--every", type=int, default=6, help="larger budgets on every N-th target of a repository and kind")
    ap.add_argument("--latency", type=int, default=0, help="timed keystrokes per repository (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    ap.add_argument("--modes", type=lambda t: tuple(t.split(",")), default=tuple(MODES),
                    help="prompt modes at the first budget: loopls,file,bare (the default: all)")
    ap.add_argument("--layout", type=lambda t: tuple(t.split(",")), default=("auto",),
                    help="FIM layouts, each a setting: auto (the checkpoint's own), psm, spm, l2r (no FIM: the "
                         "prefix continued); comma-separated")
    ap.add_argument("--best-of", type=int, default=CompletionOptions().line_best_of,
                    help="completion.lineBestOf: single-line sites decode this many most likely first tokens and "
                         "keep the best-scored line (default: the server's default; 1: plain greedy)")
    ap.add_argument("--latency-against", type=lambda t: tuple(int(k) for k in t.split(",")), default=(),
                    help="more completion.lineBestOf values whose latency is measured, taking turns with --best-of's "
                         "on each keystroke (e.g. 1,5)")
    ap.add_argument("--shard", type=_shard, default=(0, 1), help="I/N: this process's share of the targets")
    ap.add_argument("--tables-only", action="store_true", help="print the tables of the results so far, run nothing")
    ap.add_argument("--out", type=Path, default=Path("eval-completion"), help="results folder (resumable)")
    ap.add_argument("--cpu-weights", choices=CPU_WEIGHTS, default="fp32",
                    help="model.cpuWeights: the matrices in fp32 or int8 (give each its own --out)")
    args = ap.parse_args(argv)
    if not set(args.layout) <= set(LAYOUTS):
        ap.error(f"--layout takes {', '.join(LAYOUTS)}")
    budgets = [int(b) for b in args.budgets.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix="loopls-eval-"))
    indexes = []
    for repo in args.repos:
        index = Project(repo, cache)
        index.build()
        own = (line_cases(index, args.lines, args.seed) + line_cases(index, args.line_starts, args.seed + 1, "line-start")
               + block_cases(index, args.blocks, args.seed))
        indexes.append((repo, index, own))
    cases = {case_id(repo, c): c for repo, _, own in indexes for c in own}
    for name in args.model or [None]:
        folder = Path(resolve_model_name(name))
        for repo, _, _ in indexes:
            print(f"{repo}: {held_out_check(folder, repo)}", file=sys.stderr)
        results = args.out / f"{folder.name}.jsonl"
        if args.tables_only:  # a partial run's tables, from its results file
            print(f"\nmodel {folder.name} ({folder}), results so far")
            print("\n".join(table(results, cases, budgets, args.modes, args.layout)))
            continue
        asyncio.run(_run_model(name, folder, indexes, cases, budgets, args))
    return 0


async def _run_model(name: str | None, folder: Path, indexes: list[tuple[Path, Project, list[Case]]],
                     cases: dict[str, Case], budgets: list[int], args: argparse.Namespace) -> None:
    """Load the model as the server does (on the CPU, its K/V pool sized for the largest
    budget), evaluate it, print its tables and, when asked, its latency."""
    with ThreadPoolExecutor(1, thread_name_prefix="loopls-prepare") as thread:
        models = ModelHost(thread)
        models.configure(BackendConfig(model=name, device="cpu", context_tokens=max(budgets),
                                       cpu_weights=args.cpu_weights))
        backend = await models.ready()
        if backend is None:
            raise SystemExit(f"cannot load model {name or folder.name!r}: {models.error}")
        torch.set_num_threads(args.threads)  # after loading: the native backend sets its own count
        try:
            service = Service(models, thread, backend.tokenizer, [(repo, index) for repo, index, _ in indexes])
            i, n = args.shard
            results = args.out / (f"{folder.name}.jsonl" if n == 1 else f"{folder.name}.shard{i}of{n}.jsonl")
            work = interleave([(repo, own) for repo, _, own in indexes])
            await evaluate(service, work, budgets, results, args.every, args.modes, args.layout, (i, n), args.best_of)
            print(f"\nmodel {folder.name} ({folder}), {args.cpu_weights} weights, {args.threads} torch thread(s), "
                  f"line best-of {args.best_of}")
            print("\n".join(table(results, cases, budgets, args.modes, args.layout)))
            if args.latency:
                series = (args.best_of, *(k for k in args.latency_against if k != args.best_of))
                latency: dict[int, list[float]] = {k: [] for k in series}
                for repo, _, own in indexes:
                    for k, times in (await _latency(service, repo, [c for c in own if c.kind == "line"], args.latency,
                                                    series)).items():
                        latency[k] += times
                (args.out / f"{folder.name}-latency.json").write_text(json.dumps(latency))
                for k, times in latency.items():
                    p95 = statistics.quantiles(times, n=20)[18] if len(times) > 1 else times[0]
                    print(f"\nlatency to an inline result, 1K-token prompt, warm prefix cache, {args.threads} thread(s), "
                          f"line best-of {k}: P50 {statistics.median(times) * 1000:.0f} ms, P95 {p95 * 1000:.0f} ms "
                          f"({len(times)} keystrokes)")
        finally:
            models.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
