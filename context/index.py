"""The workspace index: symbols of every indexable file, persisted, kept current.

Cold builds parse each file once and persist its symbols by content hash; a re-open reads
only files whose size or mtime changed and parses only content never seen before. Open
documents overlay the disk: their text and symbols come from the editor buffer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .languages import Languages, language_for_path
from .store import SymbolStore, digest_of, store_path
from .symbols import Definition, FileSymbols, extract
from .workspace import Workspace

Progress = Callable[[int, int, str], None]  # done, total, current path


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


class WorkspaceIndex:
    def __init__(self, root: str | Path, cache_dir: Path | None = None, languages: Languages | None = None) -> None:
        self.workspace = Workspace(Path(root))
        self.root = self.workspace.root
        self.git_prefix = self.workspace.git_prefix
        self.languages = languages or Languages()
        self.store = SymbolStore(store_path(cache_dir, self.root) if cache_dir else None)
        self.files: dict[str, FileSymbols] = {}
        self.overlay: dict[str, str] = {}  # open documents: path -> buffer text
        self.generation = 0  # bumps on every change; caches of derived data key on it
        self.file_set_generation = 0  # bumps only when files appear or disappear
        self.defs_generation = 0  # bumps only when the set of names a file defines changes
        self.versions: dict[str, int] = {}  # path -> generation of its last change
        self._stat: dict[str, tuple[int, int, str]] = {}
        self._defs: dict[str, set[str]] = {}
        self._by_name: dict[str, dict[str, list[Definition]]] = {}  # per file, built on first lookup
        self._users: dict[str, set[str]] | None = None  # name -> files referencing it; built lazily
        # (generation, names whose defining files changed then): lets the graph update only
        # the files that use those names instead of rebuilding every edge.
        self.name_log: list[tuple[int, frozenset[str]]] = []

    # -- building -------------------------------------------------------------------------

    def build(self, progress: Progress | None = None) -> IndexSummary:
        """Index every file of the workspace (reusing the persisted index) and persist it."""
        start = time.perf_counter()
        summary = IndexSummary(persistent=self.store.persistent)
        known = self.store.paths()
        paths = self.workspace.candidate_paths()
        stats: dict[str, tuple[int, int, str]] = {}
        pending: list[tuple[str, bytes, str, tuple[int, int]]] = []
        done = 0
        for path in paths:
            result = self._load_one(path, known.get(path), summary, pending)
            if result is not None:
                stats[path] = result
            if result is not None or not pending or pending[-1][0] != path:
                done += 1
                if progress is not None:
                    progress(done, len(paths), path)
        new_rows: dict[str, dict] = {}
        by_path = {p: (data, digest, st) for p, data, digest, st in pending}
        for path, (data, digest, st) in by_path.items():
            symbols = self.parse(path, data)
            new_rows[digest] = symbols.to_json()
            self._set(path, symbols)
            self._count(path, summary, len(data), cached=False)
            stats[path] = (*st, digest)
            done += 1
            if progress is not None:
                progress(done, len(paths), path)
        self.store.save(new_rows, stats)
        self._stat = stats
        self.file_set_generation += 1
        self.generation += 1
        summary.files = len(self.files)
        summary.definitions = sum(len(s.definitions) for s in self.files.values())
        summary.seconds = time.perf_counter() - start
        return summary

    def _load_one(self, path: str, known: tuple[int, int, str] | None, summary: IndexSummary,
                  pending: list[tuple[str, bytes, str, tuple[int, int]]]) -> tuple[int, int, str] | None:
        """Load `path` from the cache when possible; otherwise queue it for parsing (None)."""
        try:
            st = (self.root / path).stat()
        except OSError:
            summary.skipped += 1
            return None
        if known is not None and known[:2] == (st.st_size, st.st_mtime_ns):
            cached = self.store.get(known[2])
            if cached is not None and self.workspace.allowed(path):
                self._set(path, FileSymbols.from_json(cached))
                self._count(path, summary, st.st_size, cached=True)
                return known
        data = self.workspace.read(path)
        if data is None:
            summary.skipped += 1
            return None
        digest = digest_of(data, language_for_path(path))
        cached = self.store.get(digest)
        if cached is None:
            pending.append((path, data, digest, (st.st_size, st.st_mtime_ns)))
            return None
        self._set(path, FileSymbols.from_json(cached))
        self._count(path, summary, len(data), cached=True)
        return (st.st_size, st.st_mtime_ns, digest)

    def _count(self, path: str, summary: IndexSummary, size: int, cached: bool) -> None:
        summary.bytes += size
        if cached:
            summary.from_cache += 1
        else:
            summary.parsed += 1
        lang = self.files[path].language or "text"
        summary.languages[lang] = summary.languages.get(lang, 0) + 1

    def parse(self, path: str, data: bytes) -> FileSymbols:
        """Symbols of `data` as the file `path`."""
        return parse_file(path, data, self.languages)

    # -- changes ---------------------------------------------------------------------------

    def _set(self, path: str, symbols: FileSymbols) -> None:
        old = self.files.get(path)
        old_names = old.defined_names() if old is not None else set()
        changed = old_names ^ symbols.defined_names()
        if changed:
            self.defs_generation += 1
            self.name_log.append((self.generation + 1, frozenset(changed)))
        self._track_users(path, old.references if old is not None else {}, symbols.references)
        if old is not None:
            for name in old.defined_names():
                paths = self._defs.get(name)
                if paths is not None:
                    paths.discard(path)
                    if not paths:
                        del self._defs[name]
        else:
            self.file_set_generation += 1
        self.files[path] = symbols
        self._by_name.pop(path, None)
        for name in symbols.defined_names():
            self._defs.setdefault(name, set()).add(path)
        self.generation += 1
        self.versions[path] = self.generation

    def _track_users(self, path: str, old: dict[str, int], new: dict[str, int]) -> None:
        if self._users is None or old.keys() == new.keys():
            return  # not built yet (users_of builds it on first use), or nothing to do
        for name in old.keys() - new.keys():
            users = self._users.get(name)
            if users is not None:
                users.discard(path)
                if not users:
                    del self._users[name]
        for name in new.keys() - old.keys():
            self._users.setdefault(name, set()).add(path)

    def users_of(self, names: Iterable[str]) -> set[str]:
        """Files that reference any of `names`."""
        if self._users is None:
            self._users = {}
            for path, symbols in self.files.items():
                for name in symbols.references:
                    self._users.setdefault(name, set()).add(path)
        out: set[str] = set()
        for name in names:
            out |= self._users.get(name, set())
        return out

    def remove(self, path: str) -> None:
        if path in self.files:
            self._set(path, FileSymbols(None, 0))
            del self.files[path]
            self.versions.pop(path, None)
            self._stat.pop(path, None)
            self.file_set_generation += 1

    def update_document(self, path: str, text: str, symbols: FileSymbols | None = None) -> None:
        """An open document changed: its buffer and symbols replace the disk's."""
        if not self.workspace.allowed(path):
            return
        self.overlay[path] = text
        self._set(path, symbols if symbols is not None else self.parse(path, text.encode("utf-8")))

    def close_document(self, path: str) -> None:
        self.overlay.pop(path, None)
        self.refresh([path])

    def refresh(self, paths: Iterable[str]) -> None:
        """Files changed, appeared or disappeared on disk (file-watcher events)."""
        for path in paths:
            if path in self.overlay:
                continue  # the editor's buffer wins while the document is open
            data = self.workspace.read(path) if (self.root / path).is_file() else None
            if data is None:
                self.remove(path)
                continue
            digest = digest_of(data, language_for_path(path))
            cached = self.store.get(digest)
            self._set(path, FileSymbols.from_json(cached) if cached else self.parse(path, data))

    # -- queries ---------------------------------------------------------------------------

    def text(self, path: str) -> str | None:
        """The current text of an indexed file (the buffer when open), or None."""
        if path in self.overlay:
            return self.overlay[path]
        if path not in self.files:
            return None
        data = self.workspace.read(path)
        return decode(data) if data is not None else None

    def definitions(self, name: str) -> list[tuple[str, Definition]]:
        """Every definition of `name` in the workspace, sorted by path and line."""
        out = []
        for path in sorted(self._defs.get(name, ())):
            by_name = self._by_name.get(path)
            if by_name is None:
                by_name = self._by_name[path] = {}
                for d in self.files[path].definitions:
                    by_name.setdefault(d.name, []).append(d)
            out.extend((path, d) for d in by_name.get(name, ()))
        return out

    def defining_files(self, name: str) -> set[str]:
        return self._defs.get(name, set())

    @property
    def defining(self) -> dict[str, set[str]]:
        """name -> files defining it (read-only by convention: the index owns it)."""
        return self._defs

    def close(self) -> None:
        self.store.close()


def parse_file(path: str, data: bytes, languages: Languages) -> FileSymbols:
    lang = language_for_path(path)
    tree = languages.parser(lang).parse(data) if lang is not None else None
    return extract(decode(data), lang, tree, languages, data)
