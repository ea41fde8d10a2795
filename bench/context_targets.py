"""Cross-file completion targets and the baseline retrievers of the context benchmark.

Targets are mined as CrossCodeEval does it, model-free: a line of a source file that uses an
identifier defined in another file that it imports (or, for package-scoped languages, in its
own folder), and not in its own file. The cursor is
put where that line starts (after its indentation) and the rest of the line is removed, so
the name is not visible on the line the model has to write. A retriever scores a hit when the
first line of a gold definition is inside the packed prompt.
"""

from __future__ import annotations

import posixpath
import random
import re
from dataclasses import dataclass

from loopls.context.bm25 import BM25
from loopls.context.project import Project
from loopls.context.signals import Candidate
from loopls.context.symbols import IDENTIFIER

_SKIP_LINE = re.compile(r"^\s*(import|from|#include|package|use|export \* from|require|//|#|/\*|\*)")
MAX_GOLD_FILES = 3  # a name defined in more files than this has no single answer
_PACKAGE_SCOPED = {"go", "java", "c", "cpp", "rust"}


@dataclass(frozen=True)
class Target:
    path: str
    line: int  # 0-based
    name: str
    text: str  # the file with the rest of the target line removed
    offset: int  # the cursor: start of the target line, after its indentation
    gold: tuple[tuple[str, int], ...]  # (path, 0-based first line) of each definition


def reachable_files(index: Project, path: str, imports: dict[str, set[str]]) -> set[str]:
    """The files whose names `path` can use without a qualifier it defines itself: the files it
    imports, and for languages with package scope (Go, Java, C/C++, Rust) its folder's files.
    This is CrossCodeEval's "undefined once the imports are stubbed"."""
    out = set(imports.get(path, ()))
    if index.files[path].language in _PACKAGE_SCOPED:
        folder = posixpath.dirname(path)
        out |= {p for p in index.files if posixpath.dirname(p) == folder and index.files[p].language}
    return out - {path}


def mine_targets(index: Project, count: int, seed: int = 0) -> list[Target]:
    imports = {p: index.imports.imports_of(p) for p in index.files}
    rng = random.Random(seed)
    found: list[Target] = []
    for path in sorted(index.files):
        symbols = index.files[path]
        if symbols.language is None:
            continue
        text = index.text(path)
        if not text:
            continue
        own = symbols.defined_names()
        reachable = reachable_files(index, path, imports)
        lines = text.splitlines(keepends=True)
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line))
        for row, line in enumerate(lines):
            if _SKIP_LINE.match(line) or not line.strip():
                continue
            for name in IDENTIFIER.findall(line):
                if len(name) < 3 or name in own:
                    continue
                gold = tuple((p, d.start_line) for p, d in index.definitions(name) if p != path and p in reachable)
                if not gold or len({p for p, _ in gold}) > MAX_GOLD_FILES:
                    continue
                indent = len(line) - len(line.lstrip())
                cut = starts[row] + indent
                blanked = text[:cut] + ("\n" if line.endswith("\n") else "") + text[starts[row + 1]:]
                found.append(Target(path, row, name, blanked, cut, gold))
                break  # one target per line
    rng.shuffle(found)
    return sorted(found[:count], key=lambda t: (t.path, t.line))


def hit(snippets, target: Target) -> bool:
    return any(s.source != "current" and s.path == p and s.start_line <= line <= s.end_line
               for s in snippets for p, line in target.gold)


class WindowBM25:
    """The CrossCodeEval retriever: BM25 over 10-line windows, query = the last 10 lines."""

    def __init__(self, index: Project, window: int = 10) -> None:
        self.bm25 = BM25()
        self.window = window
        self.spans: dict[tuple[str, int], tuple[int, int]] = {}
        for path in sorted(index.files):
            text = index.text(path) or ""
            lines = text.splitlines()
            docs = []
            for i, start in enumerate(range(0, max(len(lines), 1), window)):
                chunk = "\n".join(lines[start:start + window])
                counts: dict[str, int] = {}
                for term in IDENTIFIER.findall(chunk.lower()):
                    counts[term] = counts.get(term, 0) + 1
                docs.append(counts)
                self.spans[(path, i)] = (start, min(len(lines), start + window) - 1)
            self.bm25.set_file(path, docs)

    def candidates(self, target: Target, top_k: int = 3000) -> list[Candidate]:
        before = target.text[:target.offset].splitlines()[-self.window:]
        query = IDENTIFIER.findall("\n".join(before).lower())
        out = []
        for key, score in self.bm25.search(query, top_k=top_k, exclude=target.path):
            start, end = self.spans[key]
            out.append(Candidate(key[0], start, end, "bm25", score))
        return out


def random_candidates(index: Project, target: Target, seed: int) -> list[Candidate]:
    """Whole other files in a random order, each as its chunks from the top."""
    paths = sorted(p for p in index.files if p != target.path)
    random.Random(seed).shuffle(paths)
    out = []
    rank = 0
    for path in paths:
        for chunk in index.files[path].chunks:
            rank += 1
            out.append(Candidate(path, chunk.start_line, chunk.end_line, "random", 1.0 / rank))
    return out
