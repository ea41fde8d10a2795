"""Training samples in exactly the layout loopls's packer produces for a live completion.

Every sample is rendered by `loopls.context.packing.Packer` itself with the checkpoint's own
tokenizer: `<|repo_name|>` name, cross-file snippets (each file `<|file_sep|>` path, pieces
in the packer's order with its elision marks), then the current file's `<|file_sep|>` path
and its FIM window, then the target and an end-of-text token. Three modes:

- psm: prefix-suffix-middle, the server's own layout; the middle follows `<|fim_middle|>`;
- spm: the same window as suffix-prefix-middle (`<|fim_suffix|>` suffix `<|fim_prefix|>`
  prefix `<|fim_middle|>` middle), as in Bavarian et al. 2022, for robustness;
- l2r: plain left to right: the packer's layout for a model without FIM tokens (context,
  then the file up to a line start), continued by the file's next lines.

The middle of a FIM sample is the rest of a line from a cursor inside it (as a line
completion; often right before a name defined in another file of the repository, the
cross-file name CrossCodeEval's targets start with, whose definition the cross-file snippets
hold, so that the model learns to copy it from them), an indented block after its header (as
a block completion, cursor after the editor's auto-indent) or a random span. Rows of a fixed length are filled with whole samples;
what is left at the end of a row is padding that carries no loss.
"""

from __future__ import annotations

import bisect
import dataclasses
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from loopls.context.packing import Packer

from .corpus import SourceFile
from .crossfile import Repository, candidates
from .encodings import PieceEncoder

_NEWLINE = re.compile("\n")
_NAME = re.compile(r"(?<![A-Za-z0-9_])[A-Za-z_]")  # where a name starts
_WHOLE_NAME = re.compile(r"(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]*")
PAD_LABEL = -100
MIN_SAMPLE = 96  # a row's remainder shorter than this is padded


@dataclass(frozen=True)
class Mix:
    # suffix-prefix-middle is the server's layout for the shipped model (Recipe.fim_layout); some
    # prefix-suffix-middle keeps the other layout usable (completion.fimLayout)
    psm: float = 0.15
    spm: float = 0.5  # the rest is l2r
    with_context: float = 0.8  # share of samples given cross-file candidates
    line: float = 0.45  # FIM middles: rest of a line, block, random span (the rest)
    block: float = 0.2
    # of line middles: the cursor before a name defined in another file of the repository
    # (not in this one): CrossCodeEval's split, where the answer starts with a name that only
    # the cross-file snippets (or the file's imports) show. Measured on the held-out line
    # targets: with the name in the prompt the shipped model still ranked it first only about
    # one time in five, so copying it is what these middles teach. A line without such a name
    # falls back to the next rule.
    cross_name: float = 0.25
    whole_line: float = 0.25  # of line middles: the cursor at the line's indentation
    # of line middles: the cursor before any name (after a space, `.`, `(`, ...): where an
    # editor asks after a word is typed; the rest anywhere in the line
    word_start: float = 0.3


# The completion phase: the server's layout (and some PSM), loss on the middles only, mostly
# the middles an editor asks for (rest of a line, a block). Half the line middles start before
# a cross-file name and a fifth at the indentation: the fourth retrain's mix, which lifted
# held-out line completions at 2K (+2.4 points of exact match, +0.056 edit similarity); the
# fifth and sixth, with 40% / 30% there, did not keep that gain.
FIM_ONLY = Mix(psm=0.15, spm=0.85, with_context=0.9, line=0.6, block=0.25, cross_name=0.5, whole_line=0.2,
              word_start=0.2)


@dataclass(frozen=True)
class Sample:
    ids: list[int]
    mode: str
    kind: str  # line / block / span for FIM samples, "file" for l2r
    prompt_len: int  # ids[prompt_len:] is what the model writes: the middle and end-of-text


def line_starts(text: str) -> list[int]:
    return [0, *(m.end() for m in _NEWLINE.finditer(text))]


def _line_middle(text: str, rng: random.Random, whole: float, word: float, cross: float = 0.0,
                 elsewhere: Callable[[str], bool] = lambda name: False) -> tuple[int, int] | None:
    """The rest of a random non-blank line from a cursor: before a name for which `elsewhere`
    holds (share `cross`; else as for `word`), at the indentation (`whole`), before any name
    (`word`), or anywhere in the line."""
    starts = line_starts(text)
    for _ in range(8):
        k = rng.randrange(len(starts))
        lo = starts[k]
        hi = text.find("\n", lo)
        hi = len(text) if hi < 0 else hi
        line = text[lo:hi]
        indent = len(line) - len(line.lstrip())
        if not line.strip():
            continue
        r = rng.random()
        crossing = [m.start() for m in _WHOLE_NAME.finditer(line, indent) if elsewhere(m.group(0))] if r < cross else []
        if crossing:
            cursor = lo + rng.choice(crossing)
        elif r < cross:
            names = [m.start() for m in _NAME.finditer(line, indent)]
            cursor = lo + (rng.choice(names) if names else indent)
        elif r < cross + whole:
            cursor = lo + indent
        elif r < cross + whole + word:
            names = [m.start() for m in _NAME.finditer(line, indent)]
            cursor = lo + (rng.choice(names) if names else indent)
        else:
            cursor = rng.randrange(lo + indent, hi)
        if text[cursor:hi].strip():
            return cursor, hi
    return None


def _block_middle(text: str, rng: random.Random, max_lines: int = 12) -> tuple[int, int] | None:
    lines = text.split("\n")
    heads = [i for i, ln in enumerate(lines[:-1]) if ln.rstrip().endswith(":") and not ln.lstrip().startswith("#")]
    rng.shuffle(heads)
    for h in heads[:8]:
        indent = len(lines[h]) - len(lines[h].lstrip())
        body = []
        for j in range(h + 1, min(len(lines), h + 1 + max_lines)):
            ln = lines[j]
            if ln.strip() and len(ln) - len(ln.lstrip()) <= indent:
                break
            body.append(j)
        while body and not lines[body[-1]].strip():
            body.pop()
        if not body or not lines[body[0]].strip():
            continue
        first = sum(len(x) + 1 for x in lines[:body[0]])
        cursor = first + len(lines[body[0]]) - len(lines[body[0]].lstrip())
        end = sum(len(x) + 1 for x in lines[:body[-1]]) + len(lines[body[-1]])
        return cursor, end
    return None


def _span_middle(text: str, rng: random.Random) -> tuple[int, int] | None:
    if len(text) < 2:
        return None
    a = rng.randrange(len(text) - 1)
    if rng.random() < 0.5:
        b = min(len(text), a + rng.randint(1, 60))
    else:
        b = a
        for _ in range(rng.randint(1, 8)):
            nxt = text.find("\n", b + 1)
            b = len(text) if nxt < 0 else nxt
    return (a, b) if text[a:b].strip() else None


class SampleBuilder:
    """Builds samples and fixed-length rows from a deduplicated corpus; deterministic in
    (seed, row index), whichever process builds the row."""

    def __init__(self, files: list[SourceFile], tokenizer, mix: Mix = Mix(), seed: int = 0) -> None:
        self.tokenizer = tokenizer
        self.encoder = PieceEncoder(tokenizer)  # the tokenizer's ids, faster on the lines that recur
        self.mix = mix
        self.seed = seed
        by_repo: dict[str, list[SourceFile]] = {}
        for f in files:
            by_repo.setdefault(f.repo, []).append(f)
        self.repos = {name: Repository(fs) for name, fs in sorted(by_repo.items())}
        self.files = sorted(files, key=lambda f: (f.repo, f.path))
        # Larger files are drawn more often, up to a point, so that one huge file cannot crowd out the rest.
        self._cumulative: list[int] = []
        total = 0
        for f in self.files:
            total += min(len(f.text), 20_000)
            self._cumulative.append(total)
        self.eos = tokenizer.token_to_id("<|endoftext|>")
        special = tokenizer.special
        self._plain = dataclasses.replace(special, fim_prefix=None, fim_suffix=None, fim_middle=None)
        self._packers: dict[tuple[str, bool], Packer] = {}

    def _packer(self, repo: str, fim: bool) -> Packer:
        key = (repo, fim)
        if key not in self._packers:
            name = repo.split("/")[-1]
            self._packers[key] = Packer(self.encoder, self.tokenizer.special if fim else self._plain, repo_name=name)
        return self._packers[key]

    def pick_file(self, rng: random.Random) -> SourceFile:
        return self.files[bisect.bisect_right(self._cumulative, rng.randrange(self._cumulative[-1]))]

    def sample(self, rng: random.Random, budget: int, mix: Mix | None = None) -> Sample | None:
        """One sample of at most `budget` tokens (None if the drawn file gave none)."""
        mix = mix or self.mix
        f = self.pick_file(rng)
        repo = self.repos[f.repo]
        r = rng.random()
        mode = "psm" if r < mix.psm else "spm" if r < mix.psm + mix.spm else "l2r"
        use_context = rng.random() < mix.with_context
        if mode == "l2r":
            starts = [s for s in line_starts(f.text) if s < len(f.text)]
            offset = 0 if rng.random() < 0.3 else starts[rng.randrange(len(starts))]
            cands = candidates(repo, f.path, f.text, f.text.count("\n", 0, offset)) if use_context else []
            return self.l2r_sample(f, offset, budget, cands)
        k = rng.random()
        kind = "line" if k < mix.line else "block" if k < mix.line + mix.block else "span"
        span = (_line_middle(f.text, rng, mix.whole_line, mix.word_start, mix.cross_name,
                             lambda name: repo.defined_elsewhere(f.path, name)) if kind == "line"
                else _block_middle(f.text, rng) if kind == "block" else _span_middle(f.text, rng))
        if span is None:
            return None
        a, b = span
        text = f.text[:a] + f.text[b:]
        cands = candidates(repo, f.path, text, text.count("\n", 0, a)) if use_context else []
        return self.fim_sample(f, a, b, budget, mode, cands, kind)

    def fim_sample(self, f: SourceFile, a: int, b: int, budget: int, mode: str, cands: list,
                   kind: str = "span") -> Sample | None:
        """File `f` with text[a:b] as the middle: the packer's prompt for the cursor at `a` of
        the file without the middle, then the middle and end-of-text."""
        repo = self.repos[f.repo]
        middle = self.encoder.encode(f.text[a:b]) + [self.eos]
        room = budget - len(middle)
        if room < MIN_SAMPLE // 2:
            return None
        text = f.text[:a] + f.text[b:]
        packed = self._packer(f.repo, True).pack(cands, f.path, text, a, room, lambda p: repo.info(p).lines,
                                                 layout=mode)
        ids = packed.token_ids
        return Sample(ids + middle, mode, kind, len(ids))

    def l2r_sample(self, f: SourceFile, offset: int, budget: int, cands: list) -> Sample | None:
        """The packer's prompt for a model without FIM tokens (context, then the file up to
        `offset`), continued by the file's text from `offset`."""
        repo = self.repos[f.repo]
        prompt_budget = max(MIN_SAMPLE // 2, budget // 2)
        packed = self._packer(f.repo, False).pack(cands, f.path, f.text[:offset], offset, prompt_budget,
                                                  lambda p: repo.info(p).lines)
        room = budget - len(packed.token_ids)
        rest = f.text[offset:offset + room * 8]
        cont = self.encoder.encode(rest)
        if offset + len(rest) >= len(f.text):
            cont.append(self.eos)
        cont = cont[:room]
        if len(cont) < 8:
            return None
        return Sample(packed.token_ids + cont, "l2r", "file", len(packed.token_ids))

    def row(self, index: int, length: int, budgets: tuple[int, ...], phase: str = "", mix: Mix | None = None,
            middle_only: bool = False) -> tuple[list[int], list[int]]:
        """Row `index`: (input ids [length], labels [length]); labels are the next token or
        PAD_LABEL (padding; with `middle_only`, also every prompt token)."""
        rng = random.Random(f"{self.seed}:{phase}:{index}")
        ids: list[int] = []
        learn: list[bool] = []  # whether ids[i] is a token whose prediction carries loss
        while length + 1 - len(ids) >= MIN_SAMPLE:
            budget = min(rng.choice(budgets), length + 1 - len(ids))
            s = self.sample(rng, budget, mix)
            if s is not None:
                take = s.ids[:length + 1 - len(ids)]
                learn.extend(not middle_only or i >= s.prompt_len for i in range(len(take)))
                ids.extend(take)
        labels = [t if ok else PAD_LABEL for t, ok in zip(ids[1:], learn[1:])] + [PAD_LABEL] * (length + 1 - len(ids))
        ids = ids[:length] + [self.eos] * (length - len(ids[:length]))
        return ids, labels[:length]
