"""The one model of a project that retrieval and the smell checks both read.

A `Project` owns the file set (git listing or a .gitignore walk, then `.looplsignore`, the
privacy rules and the size/binary/generated filters: `workspace.py`), the open buffers with
their incremental trees (`documents.py`), every file's symbols (persisted by content hash:
`store.py`), who defines and uses each name (`names.py`), the resolved import graph
(`imports/graph.py`) and the one git history pass. It is not thread-safe: its owner updates
and reads it on one thread.

A cold `build` reads each file once and parses it at most once: files whose symbols are in
the persisted store are not parsed at all unless a consumer (the smell checks) asked to see
every tree, in which case the same parse serves both. Open documents overlay the disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tree_sitter import Tree

from .documents import ParsedDocument
from .history import Commit, read_history
from .imports import ImportGraph
from .languages import Languages, language_for_path, parse
from .names import NameTable
from .store import SymbolStore, digest_of, store_path
from .symbols import Definition, FileSymbols, extract
from .workspace import Workspace

# Open documents this long get their symbols brought up to date by `settle` (after a pause in
# typing), not on every edit: 20,000 module-level definitions cost ~100 ms of Python per update.
DEFERRED_SYMBOL_LINES = 5_000
Progress = Callable[[int, int, str], None]  # done, total, current path
TreeConsumer = Callable[[str, bytes, Tree], None]  # path, source, its tree: called once per parsed file


@dataclass
class IndexSummary:
    files: int = 0
    parsed: int = 0  # files whose content was not in the cache
    from_cache: int = 0
    skipped: int = 0  # binary, generated, over-size, unreadable
    bytes: int = 0
    definitions: int = 0
    seconds: float = 0.0
    languages: dict[str, int] = field(default_factory=dict)
    persistent: bool = False


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class Project:
    def __init__(self, root: str | Path, cache_dir: Path | None = None, languages: Languages | None = None) -> None:
        self.workspace = Workspace(Path(root))
        self.root = self.workspace.root
        self.git_prefix = self.workspace.git_prefix
        self.languages = languages or Languages()
        self.store = SymbolStore(store_path(cache_dir, self.root) if cache_dir else None)
        self.files: dict[str, FileSymbols] = {}
        self.documents: dict[str, ParsedDocument] = {}  # open buffers, by workspace-relative path
        self.oversize: dict[str, str] = {}  # open buffers too large to parse -> why
        self.unsettled: set[str] = set()  # open buffers whose symbols wait for `settle`
        self.skipped: dict[str, str] = {}  # files the last build did not read -> why
        self.names = NameTable()
        self.imports = ImportGraph()
        self.built = False
        self.generation = 0  # bumps on every change; caches of derived data key on it
        self.file_set_generation = 0  # bumps only when files appear or disappear
        self.versions: dict[str, int] = {}  # path -> generation of its last change
        self._stat: dict[str, tuple[int, int, str]] = {}
        self._history: tuple[int, list[Commit]] | None = None  # (commits asked for, commits)

    # -- building -------------------------------------------------------------------------

    def build(self, progress: Progress | None = None, consumer: TreeConsumer | None = None) -> IndexSummary:
        """Index every file of the workspace (reusing the persisted index) and persist it.
        `consumer` sees every parsed source file's tree (parsing cached files for it too)."""
        start = time.perf_counter()
        summary = IndexSummary(persistent=self.store.persistent)
        known = self.store.paths()
        paths = self.workspace.candidate_paths()
        stats: dict[str, tuple[int, int, str]] = {}
        new_rows: dict[str, dict] = {}
        self.skipped = {}
        for done, path in enumerate(paths, 1):
            row = self._load(path, known.get(path), summary, new_rows, consumer)
            if row is not None:
                stats[path] = row
            if progress is not None:
                progress(done, len(paths), path)
        self.store.save(new_rows, stats)
        self._stat = stats
        self.imports = ImportGraph(self.files)
        for path, symbols in self.files.items():
            self.imports.set_imports(path, symbols.imports)
        self.file_set_generation += 1
        self.generation += 1
        self.built = True
        summary.files = len(self.files)
        summary.definitions = sum(len(s.definitions) for s in self.files.values())
        summary.seconds = time.perf_counter() - start
        return summary

    def _load(self, path: str, known: tuple[int, int, str] | None, summary: IndexSummary, new_rows: dict[str, dict],
              consumer: TreeConsumer | None) -> tuple[int, int, str] | None:
        """Symbols of one file from the cache when its stat or content is known there, else
        parsed (once, shared with `consumer`); its (size, mtime, digest) row, or None."""
        try:
            st = (self.root / path).stat()
        except OSError:
            return self._skip(path, "unreadable", summary)
        lang = language_for_path(path)
        needs_tree = consumer is not None and lang is not None
        if known is not None and known[:2] == (st.st_size, st.st_mtime_ns) and not needs_tree \
                and self.workspace.allowed(path):
            cached = self.store.get(known[2])
            if cached is not None:
                self._bulk_set(path, FileSymbols.from_json(cached), st.st_size, cached=True, summary=summary)
                return known
        data, why = self.workspace.load(path)
        if data is None:
            return self._skip(path, why, summary)
        digest = digest_of(data, lang)
        cached = self.store.get(digest)
        tree = parse(self.languages.parser(lang), data) if lang is not None and (cached is None or needs_tree) else None
        if cached is not None:
            symbols = FileSymbols.from_json(cached)
        else:
            symbols = extract(decode(data), lang, tree, self.languages, data)
            new_rows[digest] = symbols.to_json()
        self._bulk_set(path, symbols, len(data), cached=cached is not None, summary=summary)
        if needs_tree:
            consumer(path, data, tree)
        return (st.st_size, st.st_mtime_ns, digest)

    def _skip(self, path: str, why: str, summary: IndexSummary) -> None:
        self.skipped[path] = why
        summary.skipped += 1
        return None

    def _bulk_set(self, path: str, symbols: FileSymbols, size: int, cached: bool, summary: IndexSummary) -> None:
        self._set(path, symbols, resolve_imports=False)  # the graph is resolved once at the end
        summary.bytes += size
        if cached:
            summary.from_cache += 1
        else:
            summary.parsed += 1
        lang = symbols.language or "text"
        summary.languages[lang] = summary.languages.get(lang, 0) + 1

    def parse(self, path: str, data: bytes) -> FileSymbols:
        """Symbols of `data` as the file `path`."""
        lang = language_for_path(path)
        tree = parse(self.languages.parser(lang), data) if lang is not None else None
        return extract(decode(data), lang, tree, self.languages, data)

    # -- changes ---------------------------------------------------------------------------

    def _set(self, path: str, symbols: FileSymbols, resolve_imports: bool = True) -> None:
        old = self.files.get(path)
        self.generation += 1
        self.names.replace(path, old, symbols, self.generation)
        self.files[path] = symbols
        self.versions[path] = self.generation
        if old is None:
            self.file_set_generation += 1
            if resolve_imports:
                self.imports.set_paths(self.files)
        if resolve_imports:
            self.imports.set_imports(path, symbols.imports)

    def remove(self, path: str) -> None:
        old = self.files.pop(path, None)
        if old is None:
            return
        self.generation += 1
        self.names.replace(path, old, None, self.generation)
        self.versions.pop(path, None)
        self._stat.pop(path, None)
        self.imports.remove(path)
        self.imports.set_paths(self.files)
        self.file_set_generation += 1

    def refresh(self, paths: Iterable[str]) -> None:
        """Files changed, appeared or disappeared on disk (file-watcher events)."""
        for path in paths:
            if path in self.documents:
                continue  # the editor's buffer wins while the document is open
            data = self.workspace.read(path)
            if data is None:
                self.remove(path)
                continue
            cached = self.store.get(digest_of(data, language_for_path(path)))
            self._set(path, FileSymbols.from_json(cached) if cached else self.parse(path, data))

    # -- open documents ----------------------------------------------------------------------

    def update_document(self, path: str, text: str) -> None:
        """An open document's whole text (opening it if needed): its buffer and symbols replace
        the disk's. A known document is edited where the texts differ, so its tree is reparsed
        incrementally."""
        doc = self.documents.get(path)
        if doc is None:
            self.documents[path] = ParsedDocument(path, text, self.languages, parse=False)
        else:
            doc.set_text(text)
        self._document_changed(path)

    def edit_document(self, path: str, start: int, end: int, new_text: str, result: str | None = None) -> None:
        """One edit of an open document: text[start:end] (code-point offsets) becomes `new_text`
        (`result`, when given, is the whole edited text: the document keeps that string)."""
        doc = self.documents.get(path)
        if doc is None:
            raise KeyError(f"{path} is not open")
        doc.edit(start, end, new_text, result)
        self._document_changed(path)

    def _document_changed(self, path: str) -> None:
        if not self.workspace.allowed(path):
            return  # never indexed, never checked: ignored or secret-bearing
        doc = self.documents[path]
        too_large = doc.too_large(self.workspace.max_file_bytes, self.workspace.max_file_lines)
        if too_large:
            self.oversize[path] = too_large
            self.unsettled.discard(path)
            doc.drop_tree()
            self.remove(path)
            return
        self.oversize.pop(path, None)
        if path in self.files and doc.text.count("\n") >= DEFERRED_SYMBOL_LINES:
            # the text changed now (readers of trees and versions see it), its symbols later
            self.unsettled.add(path)
            self.generation += 1
            self.versions[path] = self.generation
            return
        self.unsettled.discard(path)
        self._set(path, doc.symbols())

    def settle(self) -> None:
        """Bring the deferred symbols of long open documents up to date (all their edits since
        the last update at once, incrementally: `documents.py`)."""
        for path in sorted(self.unsettled):
            doc = self.documents.get(path)
            if doc is not None and doc.symbols_stale:
                self._set(path, doc.symbols())
        self.unsettled.clear()

    def close_document(self, path: str) -> None:
        """Back to the file on disk."""
        if self.documents.pop(path, None) is not None:
            self.oversize.pop(path, None)
            self.unsettled.discard(path)
            self.refresh([path])

    # -- queries ---------------------------------------------------------------------------

    def text(self, path: str) -> str | None:
        """The current text of an indexed file (the buffer when open), or None."""
        if path in self.documents:
            return self.documents[path].text
        if path not in self.files:
            return None
        data = self.workspace.read(path)
        return decode(data) if data is not None else None

    def tree(self, path: str) -> tuple[bytes, Tree] | None:
        """(source, tree) of an indexed source file: the buffer's incremental tree when open,
        else a parse of the file on disk."""
        lang = language_for_path(path)
        if lang is None or path not in self.files:
            return None
        doc = self.documents.get(path)
        if doc is not None:
            tree = doc.reparse()
            return (doc.source, tree) if tree is not None else None
        data = self.workspace.read(path)
        return (data, parse(self.languages.parser(lang), data)) if data is not None else None

    def definitions(self, name: str) -> list[tuple[str, Definition]]:
        """Every definition of `name` in the workspace, sorted by path and line."""
        return self.names.definitions(name, self.files)

    def defining_files(self, name: str) -> set[str]:
        return self.names.defining.get(name, set())

    def users_of(self, names: Iterable[str]) -> set[str]:
        """Files that reference any of `names`."""
        return self.names.users_of(names, self.files)

    def history(self, max_commits: int) -> list[Commit]:
        """The newest `max_commits` commits with their files, from one `git log` pass that
        every consumer shares (read again only for a longer history than read so far)."""
        if self._history is None or self._history[0] < max_commits:
            self._history = (max_commits, read_history(self.root, max_commits))
        return self._history[1][:max_commits]

    def close(self) -> None:
        self.store.close()
