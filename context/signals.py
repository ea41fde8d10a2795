"""Signals: why a piece of another file belongs in the prompt, as scored candidates.

Each signal proposes line ranges with a score; equal ranges proposed by several signals add
up, and the snippet is labelled with every signal that chose it (strongest first). Derived
structures (BM25 postings, the file graph) follow the index file by file: a keystroke
updates only the edited file's share of them.
"""

from __future__ import annotations

import math
import posixpath
from collections import defaultdict
from dataclasses import dataclass

from .bm25 import BM25
from .cochange import CoChange
from .graph import FileGraph, out_edges
from .packing import Candidate
from .project import Project
from .symbols import IDENTIFIER, FileSymbols, terms_of

WEIGHTS = {"definition": 10.0, "diff": 4.0, "bm25": 3.0, "import": 2.0, "graph": 2.0, "cochange": 2.0,
           "history": 1.0}
NEAR_LINES = 8  # a name this many lines from the cursor weighs half as much as one on its line
QUERY_BEFORE, QUERY_AFTER = 15, 5  # lines around the cursor forming the BM25 query
MAX_DEFINITION_LINES = 40
MAX_CONTAINER_LINES = 20
CONTAINER_KINDS = {"class", "interface", "module", "type"}
MAX_DEFINING_FILES = 20
DIFF_CONTEXT_LINES = 3
FILE_SIGNAL_TOP = 30  # files taken from each file-level signal
IN_SCOPE_BOOST = 2.0
SIZE_SCALE_LINES = 30
PACKAGE_SCOPED = {"go", "java", "c", "cpp", "rust"}


@dataclass(frozen=True)
class Cursor:
    path: str
    text: str
    line: int  # 0-based
    symbols: FileSymbols


class Signals:
    def __init__(self, index: Project, history: CoChange | None = None,
                 changes: dict[str, list[tuple[int, int]]] | None = None) -> None:
        self.index = index
        self.history = history
        self.changes = changes or {}  # uncommitted line ranges, workspace-relative paths
        self.bm25 = BM25()
        self.graph = FileGraph()
        self._seen: dict[str, int] = {}
        self._synced_generation = -1
        self._file_set_generation = -1

    def sync(self) -> None:
        """Bring BM25 and the graph up to date with the project: the changed files, plus the
        files using a name whose definitions moved."""
        index = self.index
        # A file appearing or leaving can change how any import resolves: redo every edge.
        first = self._file_set_generation != index.file_set_generation
        self._file_set_generation = index.file_set_generation
        moved: set[str] = set()
        for generation, names in reversed(index.names.log):
            if generation <= self._synced_generation:
                break
            moved |= names
        for path in [p for p in self._seen if p not in index.files]:
            self.bm25.remove_file(path)
            self.graph.remove(path)
            del self._seen[path]
        stale = index.users_of(moved) if moved else set()
        for path, version in index.versions.items():
            if self._seen.get(path) != version:
                self.bm25.set_file(path, [c.terms for c in index.files[path].chunks])
                self._seen[path] = version
                stale.add(path)
            elif first:
                stale.add(path)
        for path in stale & index.files.keys():
            imported = index.imports.imports_of(path)
            self.graph.set_edges(path, out_edges(path, index.files[path], index.names.defining, imported))
        self._synced_generation = index.generation
        index.names.trim_log()

    def gather(self, cursor: Cursor, recent: list[str] = ()) -> list[Candidate]:
        self.sync()
        scores: dict[tuple[str, int, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))

        def add(path: str, start: int, end: int, source: str, score: float) -> None:
            if score > 0:
                scores[(path, start, end)][source] += score

        chunk_relevance = self._bm25(cursor, add)
        self._definitions(cursor, add)
        file_scores = {
            "import": self._import_files(cursor),
            "graph": self._graph_files(cursor, recent),
            "cochange": self._cochange_files(cursor),
            "history": self._history_files(cursor),
        }
        for source, files in file_scores.items():
            for path, weight in files.items():
                self._add_chunks(path, source, weight, chunk_relevance, add)
        self._diff(cursor, add)
        out = []
        for (path, start, end), by_source in scores.items():
            ranked = sorted(by_source.items(), key=lambda kv: (-kv[1], kv[0]))
            # Value per token: a short snippet as relevant as a long one leaves room for more.
            density = 1.0 / math.sqrt(1.0 + (end - start + 1) / SIZE_SCALE_LINES)
            out.append(Candidate(path, start, end, "+".join(s for s, _ in ranked), sum(by_source.values()) * density))
        out.sort(key=lambda c: (-c.score, c.path, c.start_line))
        return out

    # -- signals -----------------------------------------------------------------------------

    def _definitions(self, cursor: Cursor, add) -> None:
        """Definitions of the names the file uses (those it does not define itself included:
        a long file's own definitions may lie outside the FIM window), the nearer the cursor
        the higher, then the more often used."""
        lines = cursor.text.split("\n")
        nearest: dict[str, int] = {}
        for dist in range(max(cursor.line + 1, len(lines) - cursor.line)):
            # outwards from the cursor: the first sighting of a name is its distance
            for row in {cursor.line - dist, cursor.line + dist}:
                if 0 <= row < len(lines):
                    for name in IDENTIFIER.findall(lines[row]):
                        nearest.setdefault(name, dist)
        weight = WEIGHTS["definition"]
        scope = self._scope(cursor)
        refs = cursor.symbols.references
        for name, dist in nearest.items():
            if len(name) < 2:
                continue
            frequency = 0.02 * min(refs.get(name, 1), 5)
            score = weight * (0.3 + frequency + 0.7 / (1 + dist / NEAR_LINES))
            self._add_definitions(name, score, scope, add)

    def _scope(self, cursor: Cursor) -> set[str]:
        """Files whose names the cursor's file sees: those it imports and, in package-scoped
        languages, the other files of its folder. A name defined there is most likely the one
        meant, as a compiler would resolve it."""
        scope = self.index.imports.imports_of(cursor.path)
        if cursor.symbols.language in PACKAGE_SCOPED:
            folder = posixpath.dirname(cursor.path)
            scope |= {p for p in self.index.imports.paths.in_dir(folder) if p != cursor.path}
        return scope

    def _add_definitions(self, name: str, score: float, scope: set[str], add) -> None:
        found = self.index.definitions(name)
        if not found or len({p for p, _ in found}) > MAX_DEFINING_FILES:
            return
        in_scope = [(p, d) for p, d in found if p in scope]
        chosen = in_scope or found
        # Ambiguity is between files; overloads in one file are one answer.
        share = (IN_SCOPE_BOOST if in_scope else 1.0) * score / len({p for p, _ in chosen})
        for path, d in chosen:
            # A container's head says what it is; its members are definitions of their own.
            cap = MAX_CONTAINER_LINES if d.kind in CONTAINER_KINDS else MAX_DEFINITION_LINES
            end = min(d.end_line, d.start_line + cap - 1)
            add(path, d.start_line, end, "definition", share)

    def _bm25(self, cursor: Cursor, add) -> dict[tuple[str, int], float]:
        lines = cursor.text.split("\n")
        query = terms_of("\n".join(lines[max(0, cursor.line - QUERY_BEFORE): cursor.line + QUERY_AFTER + 1]))
        hits = self.bm25.search(query, top_k=400, exclude=cursor.path)
        if not hits:
            return {}
        best = hits[0][1]
        relevance = {key: s / best for key, s in hits}
        for (path, i), rel in list(relevance.items())[:100]:
            chunk = self.index.files[path].chunks[i]
            add(path, chunk.start_line, chunk.end_line, "bm25", WEIGHTS["bm25"] * rel)
        return relevance

    def _import_files(self, cursor: Cursor) -> dict[str, float]:
        mine = self.index.imports.imports_of(cursor.path)
        importers = self.index.imports.importers.get(cursor.path, set())
        return {p: 1.0 if p in mine else 0.5 for p in sorted(mine | importers) if p != cursor.path}

    def _graph_files(self, cursor: Cursor, recent: list[str]) -> dict[str, float]:
        personal = {cursor.path: 1.0, **{p: 0.5 for p in recent if p != cursor.path}}
        ranks = self.graph.pagerank(personal)
        ranks.pop(cursor.path, None)
        top = sorted(ranks.items(), key=lambda kv: (-kv[1], kv[0]))[:FILE_SIGNAL_TOP]
        best = top[0][1] if top else 1.0
        return {p: r / best for p, r in top}

    def _cochange_files(self, cursor: Cursor) -> dict[str, float]:
        if self.history is None:
            return {}
        top = [c for c in self.history.coupled(self._git_path(cursor.path)) if c.support >= 2][:FILE_SIGNAL_TOP]
        return {self._ws_path(c.path): c.confidence for c in top if self._ws_path(c.path) in self.index.files}

    def _history_files(self, cursor: Cursor) -> dict[str, float]:
        if self.history is None:
            return {}
        out: dict[str, float] = {}
        for age, commit in enumerate(self.history.recent_commits(self._git_path(cursor.path), 5)):
            for f in commit.files:
                path = self._ws_path(f)
                if path in self.index.files and path != cursor.path and len(commit.files) <= 30:
                    out[path] = max(out.get(path, 0.0), 1 / (1 + age))
        return out

    def _diff(self, cursor: Cursor, add) -> None:
        for path, ranges in sorted(self.changes.items()):
            symbols = self.index.files.get(path)
            if symbols is None or path == cursor.path:
                continue
            for start, end in ranges:
                lo = max(0, start - DIFF_CONTEXT_LINES)
                hi = min(symbols.line_count - 1, end + DIFF_CONTEXT_LINES, lo + 59)
                if hi >= lo:
                    add(path, lo, hi, "diff", WEIGHTS["diff"])

    # -- helpers -----------------------------------------------------------------------------

    def _add_chunks(self, path: str, source: str, weight: float, relevance: dict, add) -> None:
        """A file chosen by a file-level signal: its chunks, the ones matching the text around
        the cursor first."""
        symbols = self.index.files.get(path)
        if symbols is None:
            return
        for i, chunk in enumerate(symbols.chunks):
            rel = relevance.get((path, i), 0.0)
            add(path, chunk.start_line, chunk.end_line, source,
                WEIGHTS[source] * weight * (0.3 + 0.7 * rel) / (1 + 0.02 * i))

    def _git_path(self, path: str) -> str:
        return self.index.git_prefix + path

    def _ws_path(self, git_path: str) -> str:
        prefix = self.index.git_prefix
        return git_path[len(prefix):] if prefix and git_path.startswith(prefix) else git_path
