"""Cross-file candidates for a training sample, the kinds loopls's context engine proposes.

The server ranks snippets with tree-sitter symbols, an import graph, BM25 and git history
(context/signals.py). Training runs where none of that is installed, and the corpus has no
history, so this module computes the same kinds of candidates with Python's own `ast` over
one repository (a distribution): definitions of the names near the cursor found in other
files ("definition", strongest when the file is imported), chunks of the imported files
("import") and of sibling files ("bm25"), weighted as signals.py weighs them. The packer
then lays them out exactly as it does for a live prompt.
"""

from __future__ import annotations

import math
import posixpath
import re
from dataclasses import dataclass

from loopls.context.packing import Candidate

from .corpus import SourceFile
from .outline import Definition, module_name

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CHUNK_MAX_LINES, CHUNK_MIN_LINES = 40, 6
MAX_DEFINITION_LINES, MAX_CONTAINER_LINES = 40, 20
NEAR_LINES = 8
QUERY_BEFORE, QUERY_AFTER = 15, 5
WEIGHTS = {"definition": 10.0, "bm25": 3.0, "import": 2.0}
IN_SCOPE_BOOST = 2.0
SIZE_SCALE_LINES = 30
MAX_SIBLINGS = 12


ROW_NAMES_CACHE = 200_000  # remembered rows' names per repository (a bound on a worker's memory)


@dataclass
class FileInfo:
    lines: list[str]  # keepends
    chunks: list[tuple[int, int, frozenset[str]]]


def _chunks(lines: list[str], defs: tuple[Definition, ...]) -> list[tuple[int, int, frozenset[str]]]:
    """Line ranges cut where definitions start, as the index cuts them (symbols.chunk_lines)."""
    n = len(lines)
    cuts = sorted({0, *(d.start for d in defs if 0 < d.start < n)})
    spans: list[tuple[int, int]] = []
    for i, start in enumerate(cuts):
        end = cuts[i + 1] if i + 1 < len(cuts) else n
        if spans and spans[-1][1] - spans[-1][0] < CHUNK_MIN_LINES:
            start = spans.pop()[0]
        for s in range(start, end, CHUNK_MAX_LINES):
            spans.append((s, min(end, s + CHUNK_MAX_LINES)))
    return [(s, e - 1, frozenset(IDENT.findall("".join(lines[s:e]).lower()))) for s, e in spans if e > s]


class Repository:
    """The files of one distribution (or standard-library package) and their analyses."""

    def __init__(self, files: list[SourceFile]) -> None:
        self.files = {f.path: f for f in files}
        self.by_module = {module_name(p): p for p in sorted(self.files)}
        self._info: dict[str, FileInfo] = {}
        self._defining: dict[str, list[str]] | None = None
        self._siblings: dict[str, list[str]] = {}
        self._by_name: dict[str, dict[str, list[Definition]]] = {}
        self._row_names: dict[str, tuple[str, ...]] = {}  # a row's distinct names, first use first

    def info(self, path: str) -> FileInfo:
        """Lines and chunks of a file, made on first use (a worker touches a fraction of them)."""
        if path not in self._info:
            lines = self.files[path].text.splitlines(keepends=True)
            self._info[path] = FileInfo(lines, _chunks(lines, self.files[path].outline.definitions))
        return self._info[path]

    def row_names(self, row: str) -> tuple[str, ...]:
        """The distinct names of one line, in order of first use; remembered, because a file's
        lines recur in every sample drawn from it."""
        names = self._row_names.get(row)
        if names is None:
            if len(self._row_names) >= ROW_NAMES_CACHE:
                self._row_names.clear()
            names = self._row_names[row] = tuple(dict.fromkeys(IDENT.findall(row)))
        return names

    def definitions(self, path: str) -> tuple[Definition, ...]:
        return self.files[path].outline.definitions

    def definitions_of(self, path: str, name: str) -> list[Definition]:
        """The file's definitions of `name`, in file order."""
        by_name = self._by_name.get(path)
        if by_name is None:
            by_name = self._by_name[path] = {}
            for d in self.definitions(path):
                by_name.setdefault(d.name, []).append(d)
        return by_name.get(name, [])

    def defining(self) -> dict[str, list[str]]:
        """name -> files defining it."""
        if self._defining is None:
            self._defining = {}
            for path in sorted(self.files):
                for name in sorted({d.name for d in self.definitions(path)}):
                    self._defining.setdefault(name, []).append(path)
        return self._defining

    def defined_elsewhere(self, path: str, name: str) -> bool:
        """Whether `name` is defined in another file of the repository and not in `path`: a
        cross-file name as CrossCodeEval picks them (one its definition signal can find)."""
        files = self.defining().get(name)
        return bool(files) and len(name) >= 2 and path not in files and len(files) <= 20

    def imported_files(self, path: str) -> list[str]:
        out = []
        for mod in self.files[path].outline.imports:
            target = self.by_module.get(mod)
            if target and target != path and target not in out:
                out.append(target)
        return out

    def siblings(self, path: str) -> list[str]:
        if path not in self._siblings:
            folder = posixpath.dirname(path)
            self._siblings[path] = [p for p in sorted(self.files)
                                    if p != path and posixpath.dirname(p) == folder][:MAX_SIBLINGS]
        return self._siblings[path]


def candidates(repo: Repository, path: str, text: str, line: int) -> list[Candidate]:
    """Scored snippets of other files for the cursor on `line` of `text` (the file `path` as
    the prompt shows it), strongest first, like Signals.gather."""
    scores: dict[tuple[str, int, int], dict[str, float]] = {}

    def add(p: str, start: int, end: int, source: str, score: float) -> None:
        by_source = scores.setdefault((p, start, end), {})
        by_source[source] = by_source.get(source, 0.0) + score

    rows = text.split("\n")
    imported = repo.imported_files(path)
    _definitions(repo, path, rows, line, set(imported), add)
    query = set(IDENT.findall("\n".join(rows[max(0, line - QUERY_BEFORE): line + QUERY_AFTER + 1]).lower()))
    for source, files, weight in (("import", imported, 1.0), ("bm25", repo.siblings(path), None)):
        for other in files:
            for start, end, terms in repo.info(other).chunks:
                rel = len(query & terms) / math.sqrt(1 + len(terms)) / math.sqrt(1 + len(query))
                if weight is None:
                    if rel > 0.05:
                        add(other, start, end, source, WEIGHTS[source] * min(1.0, 2 * rel))
                else:
                    add(other, start, end, source, WEIGHTS[source] * weight * (0.3 + 0.7 * min(1.0, 2 * rel)))
    out = []
    for (p, start, end), by_source in scores.items():
        ranked = sorted(by_source.items(), key=lambda kv: (-kv[1], kv[0])) if len(by_source) > 1 else by_source.items()
        density = 1.0 / math.sqrt(1.0 + (end - start + 1) / SIZE_SCALE_LINES)
        out.append(Candidate(p, start, end, "+".join(s for s, _ in ranked), sum(by_source.values()) * density))
    out.sort(key=lambda c: (-c.score, c.path, c.start_line))
    return out


def _nearest(repo: Repository, rows: list[str], line: int) -> dict[str, int]:
    """name -> rows between `line` and the name's nearest use, in order of first use (the
    order decides how scores add up, so it is kept)."""
    names = [repo.row_names(text) for text in rows]
    order = dict.fromkeys(name for row in names for name in row)
    nearest: dict[str, int] = {}
    # rows from the farthest to the nearest: a nearer row's distance overwrites a farther one's
    for row in sorted(range(len(rows)), key=lambda r: -abs(r - line)):
        nearest.update(dict.fromkeys(names[row], abs(row - line)))
    return {name: nearest[name] for name in order}


def _definitions(repo: Repository, path: str, rows: list[str], line: int, scope: set[str], add) -> None:
    defining = repo.defining()
    for name, dist in _nearest(repo, rows, line).items():
        files = defining.get(name)
        if files is None or len(name) < 2:
            continue
        files = [p for p in files if p != path]
        if not files or len(files) > 20:
            continue
        in_scope = [p for p in files if p in scope]
        chosen = in_scope or files
        score = WEIGHTS["definition"] * (0.3 + 0.7 / (1 + dist / NEAR_LINES))
        share = (IN_SCOPE_BOOST if in_scope else 1.0) * score / len(chosen)
        for p in chosen:
            for d in repo.definitions_of(p, name):
                cap = MAX_CONTAINER_LINES if d.container else MAX_DEFINITION_LINES
                add(p, d.start, min(d.end, d.start + cap - 1), "definition", share)
