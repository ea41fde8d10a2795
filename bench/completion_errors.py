"""Why line completions miss: the model's first token, its top-k alternatives, and whether
the answer's name was in the prompt at all.

    python bench/completion_errors.py REPO [REPO ...] [--model M] [--lines 30] [--seed 0]
        [--budget 2048] [--top 5] [--shard I/N] [--out FILE] [--tables-only]

The line targets are bench/eval_completion.py's (CrossCodeEval's split: the cursor right
before a name defined in another file, the rest of the line removed), and so are the prompts
("file only": the packer without snippets; "loopls": the context engine), in the layout the
checkpoint declares, at the budget the server gives a prompt (`--budget` minus 49 for a
48-token line completion). The model runs here on its own (the engine's contiguous path, fp32,
one thread), not through the server's completion service: it reads the first step's
distribution, then continues each of the `--top` most likely first tokens greedily to the
end of the line. Per target and prompt it records the rank and probability of the answer's
first token, each candidate's text, edit similarity and mean log-probability, and how often
the answer's leading name occurs in the prompt. Results are one JSON line per target in
`--out` (resumable; `--shard` as in eval_completion); `--tables-only` prints the summary:

- greedy: the first candidate (what greedy decoding writes, before the server's
  post-processing, which the line targets rarely need);
- oracle@k: the best of the k candidates (what a perfect reranker of first tokens would give);
- rerank: the candidate with the highest mean log-probability (first token included), a
  best-of-k that needs no knowledge of the answer;
- name in prompt: targets whose answer starts with a name that occurs in the prompt, and on
  those how often the model's most likely first token is the answer's.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_completion import _shard, held_out_check, line_cases, similarity  # noqa: E402

from loopls.context.assemble import ContextEngine  # noqa: E402
from loopls.context.project import Project  # noqa: E402
from loopls.engine.model.cache import KVCache  # noqa: E402
from loopls.engine.model.loader import LoadedModel, load_checkpoint  # noqa: E402
from loopls.engine.model import rerank  # noqa: E402
from loopls.engine.model.models import resolve_model_name  # noqa: E402

LINE_TOKENS = 48  # the eval's max_tokens for a line target
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Probe:
    """The model's view of one prompt: the first step's distribution, greedy continuations."""

    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm
        tok = lm.tokenizer
        self.stops = set(tok.special.eos_ids) | {i for i in range(tok.vocab_size) if "\n" in tok.decode([i])}

    @torch.inference_mode()
    def first(self, ids: list[int]) -> tuple[KVCache, torch.Tensor]:
        cache = KVCache.for_model(self.lm.model, 1, len(ids) + LINE_TOKENS + 1, torch.float32, "cpu")
        return cache, torch.log_softmax(self.lm.model(torch.tensor([ids]), cache)[0, -1].float(), -1)

    @torch.inference_mode()
    def continue_line(self, cache: KVCache, token: int, logp: float) -> tuple[str, list[float]]:
        """The line greedily continued after `token`, and each token's log-probability."""
        cache = copy.deepcopy(cache)  # the prompt's cache is shared by every candidate
        out, logps = [token], [logp]
        while len(out) < LINE_TOKENS and token not in self.stops:
            step = torch.log_softmax(self.lm.model(torch.tensor([[token]]), cache)[0, -1].float(), -1)
            token = int(step.argmax())
            if token not in self.stops:
                out.append(token)
                logps.append(float(step[token]))
        return self.lm.tokenizer.decode(out).split("\n", 1)[0].strip(), logps


def probe_target(probe: Probe, ids: list[int], gold: str, top: int) -> dict:
    tok = probe.lm.tokenizer
    cache, logp = probe.first(ids)
    gold_first = tok.encode(gold)[0]
    rank = int((logp > logp[gold_first]).sum())
    values, indices = torch.topk(logp, top)
    shown = tok.decode(ids, skip_special=False)
    known = rerank.words(shown)
    cands = []
    for t, lp in zip(indices.tolist(), values.tolist()):
        text, logps = probe.continue_line(cache, t, lp)
        cands.append({"first": tok.decode([t]), "p": round(float(torch.exp(torch.tensor(lp))), 4), "text": text,
                      "mean_logp": round(rerank.score("mean", logps), 4), "es": similarity(text, gold),
                      "logps": [round(x, 4) for x in logps], "unknown": rerank.unknown_names(text, known)})
    return {"prompt_tokens": len(ids), "gold_first_rank": rank, "gold_first_p": round(float(logp[gold_first].exp()), 4),
            "name_in_prompt": name_shown(tok, ids, gold), "candidates": cands}


def name_shown(tok, ids: list[int], gold: str) -> int:
    """How often the answer's leading name occurs in the prompt (0: only context could show it)."""
    name = NAME.match(gold)
    return tok.decode(ids, skip_special=False).count(name.group(0)) if name else 0


def run(args: argparse.Namespace) -> None:
    lm = load_checkpoint(resolve_model_name(args.model), "cpu", torch.float32)
    torch.set_num_threads(1)
    probe = Probe(lm)
    tok = lm.tokenizer
    layout = tok.special.fim_layout
    budget = args.budget - LINE_TOKENS - 1  # as the service: room for the completion
    done = {json.loads(line)["case"] for line in args.out.read_text().splitlines()} if args.out.exists() else set()
    cache_dir = Path(tempfile.mkdtemp(prefix="loopls-errors-"))
    work = []
    for repo in args.repos:
        print(f"{repo}: {held_out_check(Path(resolve_model_name(args.model)), repo)}", file=sys.stderr)
        index = Project(repo, cache_dir)
        index.build()
        engine = ContextEngine(index, tok, tok.special)
        cases = line_cases(index, args.lines, args.seed)
        print(f"{repo}: {len(cases)} line targets", file=sys.stderr)
        work += [(repo, engine, case) for case in cases]
    i, n = args.shard
    with args.out.open("a", encoding="utf-8") as sink:
        for k, (repo, engine, case) in enumerate(work):
            key = f"{repo.name}:{case.path}:{case.offset}"
            if k % n != i or key in done:
                continue
            gold = case.gold.strip()
            file_only = engine.packer.pack([], case.path, case.text, case.offset, budget, engine.read_lines, layout)
            if args.absent_only and name_shown(tok, file_only.token_ids, gold):
                continue
            engine.index.update_document(case.path, case.text)  # an open document, as the server has it
            try:
                with_context = engine.assemble(case.path, case.text, case.offset, budget, layout)
            finally:
                engine.index.close_document(case.path)
            record = {"case": key, "gold": gold}
            for label, packed in (("file only", file_only), ("loopls", with_context)):
                record[label] = probe_target(probe, packed.token_ids, gold, args.top)
            sink.write(json.dumps(record) + "\n")
            sink.flush()


def _rows(out: Path) -> list[dict]:
    files = [out, *sorted(out.parent.glob(f"{out.stem}.shard*"))] if out.exists() else sorted(
        out.parent.glob(f"{out.stem}.shard*"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line]


def summary(out: Path) -> list[str]:
    rows = _rows(out)
    mean = statistics.fmean
    lines = [f"{len(rows)} line targets", "",
             "| prompt | greedy EM | greedy ES | oracle@k EM | oracle@k ES | rerank EM | rerank ES "
             "| answer's first token first | in top k | name in prompt | of those, first token first |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label in ("file only", "loopls"):
        got = [(r["gold"], r[label]) for r in rows]
        greedy = [c["candidates"][0] for _, c in got]
        best = [max(c["candidates"], key=lambda x: x["es"]) for _, c in got]
        rerank_ = [max(c["candidates"], key=lambda x: x["mean_logp"]) for _, c in got]
        named = [c for _, c in got if c["name_in_prompt"]]
        k = len(got[0][1]["candidates"]) if got else 0

        def em(chosen: list[dict]) -> str:
            return f"{100 * mean(c['text'] == g for c, (g, _) in zip(chosen, got)):.1f}%"

        lines.append(
            f"| {label} | {em(greedy)} | {mean(c['es'] for c in greedy):.3f} | {em(best)} | "
            f"{mean(c['es'] for c in best):.3f} | {em(rerank_)} | {mean(c['es'] for c in rerank_):.3f} | "
            f"{100 * mean(c['gold_first_rank'] == 0 for _, c in got):.1f}% | "
            f"{100 * mean(c['gold_first_rank'] < k for _, c in got):.1f}% | {len(named)} of {len(got)} | "
            f"{100 * mean(c['gold_first_rank'] == 0 for c in named) if named else 0:.1f}% |")
    return lines


def _mean_se(values: list[float], digits: int = 3) -> str:
    m = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{m:+.{digits}f} ± {se:.{digits}f}"


def chosen(record: dict, k: int, kind: str) -> dict:
    """The candidate best-of-k with score `kind` picks among the k most likely first tokens
    (candidates without per-token log-probabilities, from older runs, cannot be rescored)."""
    cands = record["candidates"][:k]
    # a candidate shorter than the engine's limit for the others stopped by itself (rerank.best)
    return cands[rerank.best(kind, [(c["logps"], c["unknown"], len(c["logps"]) < rerank.OTHER_MAX_TOKENS)
                                    for c in cands])]


def best_of_table(out: Path, ks: tuple[int, ...] = (3, 5)) -> list[str]:
    """Best-of-k against greedy, paired per target: EM and ES, and the difference with the
    standard error of the paired difference."""
    rows = [r for r in _rows(out) if "logps" in r["file only"]["candidates"][0]]
    lines = [f"best-of-k against greedy ({len(rows)} line targets), paired; difference ± standard error", "",
             "| prompt | decoding | EM | EM - greedy | ES | ES - greedy |", "|---|---|---|---|---|---|"]
    for label in ("file only", "loopls"):
        greedy = [r[label]["candidates"][0] for r in rows]
        g_em = [float(c["text"] == r["gold"]) for c, r in zip(greedy, rows)]
        g_es = [c["es"] for c in greedy]
        lines.append(f"| {label} | greedy | {100 * statistics.fmean(g_em):.1f}% | | {statistics.fmean(g_es):.3f} | |")
        for k in ks:
            for kind in rerank.SCORES:
                picked = [chosen(r[label], k, kind) for r in rows]
                em = [float(c["text"] == r["gold"]) for c, r in zip(picked, rows)]
                es = [c["es"] for c in picked]
                lines.append(f"| {label} | best of {k}, {kind} | {100 * statistics.fmean(em):.1f}% | "
                             f"{_mean_se([100 * (a - b) for a, b in zip(em, g_em)], 1)} | {statistics.fmean(es):.3f} | "
                             f"{_mean_se([a - b for a, b in zip(es, g_es)])} |")
    return lines


def context_table(out: Path) -> list[str]:
    """Loopls context against the file alone (greedy), paired, on every target and on those
    whose answer's leading name the file-only prompt does not show."""
    rows = _rows(out)
    lines = ["context lift (greedy): loopls minus file only, paired", "",
             "| targets | n | file only EM / ES | loopls EM / ES | EM difference | ES difference |",
             "|---|---|---|---|---|---|"]
    absent = [r for r in rows if not r["file only"]["name_in_prompt"]]
    for label, group in (("all", rows), ("name not in the file-only prompt", absent)):
        if not group:
            continue
        f = [r["file only"]["candidates"][0] for r in group]
        c = [r["loopls"]["candidates"][0] for r in group]
        f_em = [100 * float(x["text"] == r["gold"]) for x, r in zip(f, group)]
        c_em = [100 * float(x["text"] == r["gold"]) for x, r in zip(c, group)]
        lines.append(f"| {label} | {len(group)} | {statistics.fmean(f_em):.1f}% / "
                     f"{statistics.fmean(x['es'] for x in f):.3f} | {statistics.fmean(c_em):.1f}% / "
                     f"{statistics.fmean(x['es'] for x in c):.3f} | {_mean_se([b - a for a, b in zip(f_em, c_em)], 1)} | "
                     f"{_mean_se([y['es'] - x['es'] for x, y in zip(f, c)])} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repos", nargs="+", type=Path)
    ap.add_argument("--model", help="default: the shipped default model")
    ap.add_argument("--lines", type=int, default=30, help="line targets per repository (as eval_completion)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=2048, help="completion.contextTokens")
    ap.add_argument("--top", type=int, default=5, help="first tokens continued per prompt")
    ap.add_argument("--shard", type=_shard, default=(0, 1), help="I/N: this process's share of the targets")
    ap.add_argument("--out", type=Path, default=Path("completion-errors.jsonl"))
    ap.add_argument("--absent-only", action="store_true",
                    help="only targets whose answer's leading name is not in the file-only prompt")
    ap.add_argument("--tables-only", action="store_true", help="summarise the results so far, run nothing")
    args = ap.parse_args(argv)
    if not args.tables_only:
        i, n = args.shard
        out = args.out
        args.out = out if n == 1 else out.with_name(f"{out.stem}.shard{i}of{n}{out.suffix}")
        run(args)
        args.out = out
    print("\n".join(summary(args.out) + [""] + best_of_table(args.out) + [""] + context_table(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
