"""What an editor would be shown at many real cursor positions, classified: garbage or not.

    python bench/completion_garbage.py [REPO] [--sites 300] [--seed 0] [--bare] [--threads 1]
        [--budget 1024] [--out FILE] [--tables-only] [--before FILE]

REPO (default: loopls' own tree) is indexed as `loopls complete` indexes a git work tree.
Sites are drawn from its Python files: a random non-blank line, cut at a random point between
its indentation and its end, as a typist leaves it mid-line or at the line's end; the rest of
the line is removed (the lines after it stay), and on every other site the closing brackets
an auto-closing editor would have typed for what the line's start leaves open follow the
cursor. Each site is asked of the server's completion service (`lsp/completion/service.py`,
the embedded default model on the CPU, as `loopls complete` builds it: the project's context
engine for the prompt, or with `--bare` the buffer alone), as an automatic request without
the typing debounce: prompt, greedy decoding, stop rules, post-processing, line check,
next-best first tokens, secret filter. What it shows is classified (a suggestion may fall in
several classes):

- repeated phrase: a phrase of 1-6 tokens (one a name) three times in a row on a line of the
  result (the line's typed start included), or two equal lines in a row;
- dangling end: the suggestion's last line ends in code (not in a string or a comment) with
  an operator, `=`, `,`, `.`, an opening bracket or a keyword that wants an operand (`and`,
  `in`, ...); not `...`, `import *`, nor a comma that ends an item of a list or call written
  one item a line (the cursor in brackets opened on an earlier line);
- leaves a bracket open: not dangling, but its last line leaves open a bracket it opened
  (`foo(a, b`);
- unbalanced bracket: the line after accepting closes a bracket nothing opened, where the
  line before it did not (brackets in strings and comments not counted);
- breaks the line: the cursor's line parsed (tree-sitter, `line_check.py`) and does not with
  the suggestion accepted;
- repeats the suffix: the suggestion ends with the code after the cursor on its line, or a
  line of it is the next non-blank line of the document;
- repeats the line above: its first line (with the typed start) is the line above;
- trailing whitespace: a line of it ends with a space or a tab;
- leaves the block: a line after its first is indented less than the cursor's line.

Per site one JSON line goes to `--out` (resumable: sites already there are not asked again);
the table (class: count, share of the sites shown something, one example) is printed at the
end, and `--tables-only` prints it from the file (the classes are computed again: a changed
classifier needs no new run). `--before FILE`: another run's results over the same sites
(the same repository, `--sites` and `--seed`; say, before a change to the filters), side by
side with these, and how many sites lost or gained a suggestion.

The prompt budget is 1024 tokens by default (the server's 2048 costs about 3 s a site on a
2-core machine; 1024 about 1 s): `--budget 2048` for the server's own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from loopls.context.assemble import ContextEngine
from loopls.context.languages import Languages
from loopls.context.project import Project
from loopls.engine.backends import BackendConfig
from loopls.lsp.completion.postprocess import open_stack
from loopls.lsp.completion.service import CompletionRequest, CompletionService
from loopls.lsp.completion.site import SiteReader
from loopls.lsp.model_host import ModelHost
from loopls.lsp.options import CompletionOptions

ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\S")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]+")
DANGLING = re.compile(r"(?:[=+\-*/%&|^<>!~@,.]|(?<![\w.])(?:and|or|not|in|is|if|elif|else|for|while|with|as|from|import|"
                      r"lambda|await|assert|del|def|class|async))\s*$")
PAIRS = {"(": ")", "[": "]", "{": "}"}
CLASSES = ("repeated phrase", "dangling end", "leaves a bracket open", "unbalanced bracket", "breaks the line", "repeats the suffix",
           "repeats the line above", "trailing whitespace", "leaves the block")


@dataclass(frozen=True)
class ScanSite:
    path: str  # relative to the repository
    line: int  # 0-based
    column: int  # the cursor in the line
    closers: str  # what an auto-closing editor typed after the cursor ("" for none)


def draw_sites(index: Project, count: int, seed: int) -> list[ScanSite]:
    """`count` sites over the Python files, a line drawn uniformly among all non-blank lines."""
    rng = random.Random(seed)
    lines = [(path, i, line) for path in sorted(p for p in index.files if p.endswith(".py"))
             for i, line in enumerate((index.text(path) or "").split("\n")) if line.strip()]
    chosen = sorted(rng.sample(range(len(lines)), min(count, len(lines))))
    sites = []
    for k, n in enumerate(chosen):
        path, row, line = lines[n]
        line = line.rstrip()
        indent = len(line) - len(line.lstrip())
        column = rng.randint(indent, len(line))
        sites.append(ScanSite(path, row, column, auto_closed(line[:column]) if k % 2 else ""))
    return sites


def auto_closed(head: str) -> str:
    """What an auto-closing editor has typed after `head`: the closers of the brackets and
    quotes it leaves open, innermost first."""
    return "".join(PAIRS.get(ch, ch) for ch in reversed(open_stack(head)))


def document(index: Project, site: ScanSite) -> tuple[str, int]:
    """The file with the site's line cut at the cursor (and the auto-closed brackets after
    it), and the cursor's offset."""
    lines = (index.text(site.path) or "").split("\n")
    start = sum(len(line) + 1 for line in lines[:site.line])
    head = lines[site.line][:site.column]
    lines[site.line] = head + site.closers
    return "\n".join(lines), start + len(head)


class Observed(CompletionService):
    """The completion service, noting the model's texts before post-processing (the greedy
    text and any next-best alternative), for the results file only."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.raw: list[str] = []

    def _finish(self, raw, finish_reason, site, options, alternative=False):
        self.raw.append(raw)
        return super()._finish(raw, finish_reason, site, options, alternative)


# -- classes ---------------------------------------------------------------------------------

def _code(line: str) -> tuple[str, bool]:
    """`line` with its strings blanked and its comment cut, and whether it ends in code (not
    inside a string, not in a comment)."""
    out, quote, i = [], None, 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                out.append(" ")
                i += 1
            elif ch == quote:
                quote = None
            out.append(" " if quote else ch)
        elif ch in "\"'":
            quote = ch
            out.append(ch)
        elif ch == "#":
            return "".join(out), False
        else:
            out.append(ch)
        i += 1
    return "".join(out), quote is None


def _depth_errors(text: str) -> tuple[int, int]:
    """(closers that close nothing, brackets left open) in the code of `text`."""
    stack, stray = [], 0
    for ch in "\n".join(_code(line)[0] for line in text.split("\n")):
        if ch in PAIRS:
            stack.append(PAIRS[ch])
        elif ch in PAIRS.values():
            if stack and stack[-1] == ch:
                stack.pop()
            else:
                stray += 1
    return stray, len(stack)


def _looped(line: str) -> bool:
    words = TOKEN.findall(line)
    for n in range(1, 7):
        for start in range(0, len(words) - 3 * n + 1):
            unit = words[start:start + n]
            if not any(NAME.fullmatch(w) for w in unit):
                continue
            if words[start + n:start + 2 * n] == unit and words[start + 2 * n:start + 3 * n] == unit:
                return True
    return False


def classify(record: dict, reader: SiteReader) -> list[str]:
    """The classes of what the site of `record` showed ([] for clean or nothing shown)."""
    shown = record["shown"]
    if shown is None:
        return []
    text, replace = shown["text"], shown["replace"]
    doc, offset = record["document"], record["offset"]
    site = reader.read(doc, offset, "python")
    found = []
    accepted_lines = (site.prefix_line + text + site.suffix_line[replace:]).split("\n")
    suggestion_lines = text.split("\n")
    if any(_looped(line) for line in accepted_lines) or any(
            a.strip() and a.strip() == b.strip() for a, b in zip(suggestion_lines, suggestion_lines[1:])):
        found.append("repeated phrase")
    last = (site.prefix_line + text).split("\n")[-1]
    code, in_code = _code(last)
    if not site.literal and in_code and text.strip():
        closes = _depth_errors(site.prefix_line)[0] if "\n" in text else 0  # the next line out of them
        comma_item = site.enclosed and not closes and code.rstrip().endswith(",")
        if (DANGLING.search(code) or code.rstrip().endswith(tuple(PAIRS))) and not comma_item \
                and not re.search(r"(\.\.\.|\bimport\s+\*)\s*$", code):
            found.append("dangling end")
        elif _depth_errors(last)[1] > _depth_errors(site.prefix_line if "\n" not in text else "")[1]:
            found.append("leaves a bracket open")
    before = site.prefix_line + site.suffix_line
    after = site.prefix_line + text + site.suffix_line[replace:]
    if _depth_errors(after)[0] > _depth_errors(before)[0]:
        found.append("unbalanced bracket")
    if site.line_check is not None and not site.line_check.accepts(text, replace):
        found.append("breaks the line")
    suffix = site.suffix_line[replace:].strip()
    following = next((line.strip() for line in site.following.split("\n") if line.strip()), "")
    if (suffix and set(suffix) - set(")]}") and text.rstrip().endswith(suffix)) or \
            (following and any(line.strip() == following for line in suggestion_lines)):
        found.append("repeats the suffix")
    above = doc[:offset - len(site.prefix_line)].rstrip("\n").split("\n")[-1].strip()
    if above and (site.prefix_line + suggestion_lines[0]).strip() == above:
        found.append("repeats the line above")
    if any(line != line.rstrip(" \t") for line in suggestion_lines):
        found.append("trailing whitespace")
    base = len(site.prefix_line) - len(site.prefix_line.lstrip())
    if any(line.strip() and len(line) - len(line.lstrip()) < base for line in suggestion_lines[1:]):
        found.append("leaves the block")
    return found


def table(records: list[dict]) -> list[str]:
    reader = SiteReader(Languages())
    shown = [r for r in records if r["shown"] is not None]
    classes = {id(r): classify(r, reader) for r in shown}
    garbage = [r for r in shown if classes[id(r)]]
    multi = sum(r["multiline"] for r in records)
    out = [f"{len(records)} sites ({multi} multi-line), {len(shown)} shown something "
           f"({100 * len(shown) / max(len(records), 1):.0f}%), {len(garbage)} of those garbage "
           f"({100 * len(garbage) / max(len(shown), 1):.1f}%), {len(shown) - len(garbage)} clean",
           "", "| class | sites | share of shown | example (typed start ⟦shown⟧ after) |", "|---|---|---|---|"]
    for name in CLASSES:
        hits = [r for r in shown if name in classes[id(r)]]
        example = _example(hits[0]) if hits else ""
        out.append(f"| {name} | {len(hits)} | {100 * len(hits) / max(len(shown), 1):.1f}% | {example} |")
    return out


def paired(before: list[dict], after: list[dict]) -> list[str]:
    """Two runs over the same sites side by side: the classes' counts, what changed per site."""
    reader = SiteReader(Languages())
    old = {_key(r): r for r in before}
    pairs = [(old[_key(r)], r) for r in after if _key(r) in old]
    classes = [({c for c in classify(a, reader)}, {c for c in classify(b, reader)}) for a, b in pairs]
    shown = [(a["shown"] is not None, b["shown"] is not None) for a, b in pairs]
    out = [f"{len(pairs)} sites in both runs", "", "| | before | after |", "|---|---|---|",
           f"| shown something | {sum(a for a, _ in shown)} | {sum(b for _, b in shown)} |",
           f"| garbage (any class) | {sum(bool(a) for a, _ in classes)} | {sum(bool(b) for _, b in classes)} |"]
    for name in CLASSES:
        out.append(f"| {name} | {sum(name in a for a, _ in classes)} | {sum(name in b for _, b in classes)} |")
    changed = sum(a["shown"] != b["shown"] for a, b in pairs)
    lost = sum(x and not y for x, y in shown)
    gained = sum(y and not x for x, y in shown)
    out += ["", f"suggestions that changed: {changed}; sites that showed something before and nothing after: {lost}; "
                f"nothing before and something after: {gained}"]
    return out


def _key(record: dict) -> tuple:
    return record["path"], record["line"], record["column"], record["closers"]


def _example(record: dict) -> str:
    doc, offset = record["document"], record["offset"]
    start = doc.rfind("\n", 0, offset) + 1
    end = doc.find("\n", offset)
    text = record["shown"]["text"]
    shown = f"{doc[start:offset].strip()}⟦{text}⟧{doc[offset + record['shown']['replace']:end if end >= 0 else None]}"
    return "`" + shown.replace("\n", "⏎").replace("|", "\\|").replace("`", "'")[:110] + "`"


# -- the run ---------------------------------------------------------------------------------

def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


async def scan(repo: Path, index: Project, sites: list[ScanSite], out: Path, bare: bool, threads: int,
               budget: int) -> None:
    done = {_key(r) for r in _records(out)}
    options = CompletionOptions(context_tokens=budget)
    with ThreadPoolExecutor(1, thread_name_prefix="loopls-prepare") as thread:
        models = ModelHost(thread)
        models.configure(BackendConfig(model=None, device="cpu", context_tokens=options.context_tokens))
        backend = await models.ready()
        if backend is None:
            raise SystemExit(f"cannot load the default model: {models.error}")
        torch.set_num_threads(threads)
        engine = ContextEngine(index, backend.tokenizer, backend.tokenizer.special)
        current: dict[str, str] = {}

        def provide(tokenizer, uri, version, text, offset, budget, layout=None):
            path = current["path"]
            index.update_document(path, text)  # an open document: the index sees its buffer
            try:
                return engine.assemble(path, text, offset, budget, layout)
            except (ValueError, OSError):  # as the server: a budget too small for labels, the buffer alone
                return None
            finally:
                index.close_document(path)

        service = Observed(models, thread, lambda: options, context=None if bare else provide,
                           label=lambda p: Path(p).name if p else None, debounce=False)
        reader = SiteReader(Languages())
        try:
            with out.open("a", encoding="utf-8") as sink:
                for k, site in enumerate(sites):
                    if (site.path, site.line, site.column, site.closers) in done:  # see _key
                        continue
                    text, offset = document(index, site)
                    path = repo / site.path
                    current["path"] = site.path
                    service.raw = []
                    t0 = time.perf_counter()
                    request = CompletionRequest(path.resolve().as_uri(), None, str(path), "python", text, offset,
                                                invoked=False)
                    try:
                        result = await service.complete(request)
                    finally:
                        service.forget(request.uri)
                    shown = result.suggestions[0] if result and result.suggestions else None
                    record = {**asdict(site), "document": text, "offset": offset,
                              "multiline": reader.read(text, offset, "python").multiline, "raw": service.raw,
                              "shown": {"text": shown.text, "replace": shown.replace} if shown else None,
                              "seconds": round(time.perf_counter() - t0, 2)}
                    sink.write(json.dumps(record) + "\n")
                    sink.flush()
                    if k % 25 == 0:
                        print(f"{k}/{len(sites)} sites", file=sys.stderr)
        finally:
            models.shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repo", nargs="?", type=Path, default=ROOT)
    ap.add_argument("--sites", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=1024,
                    help="completion.contextTokens, the prompt's budget (the server's default: 2048)")
    ap.add_argument("--bare", action="store_true", help="the buffer alone as the prompt (no context engine)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    ap.add_argument("--out", type=Path, default=Path("completion-garbage.jsonl"), help="results (resumable)")
    ap.add_argument("--tables-only", action="store_true", help="classify the results file, run nothing")
    ap.add_argument("--before", type=Path, help="another run's results over the same sites: a paired table")
    args = ap.parse_args(argv)
    if not args.tables_only:
        index = Project(args.repo, Path(tempfile.mkdtemp(prefix="loopls-garbage-")))
        index.build()
        sites = draw_sites(index, args.sites, args.seed)
        t0 = time.perf_counter()
        asyncio.run(scan(args.repo, index, sites, args.out, args.bare, args.threads, args.budget))
        print(f"{len(sites)} sites in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print("\n".join(table(_records(args.out))))
    if args.before:
        print("\n" + "\n".join(paired(_records(args.before), _records(args.out))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
