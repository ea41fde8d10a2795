"""The resolved import graph of a project: each file's imported repository files, both ways.

One `ImportGraph` per project model, updated file by file as symbols change; retrieval (the
import signal, the file graph, name scope) and the smell checks (import cycles, change impact)
read it. A target reached only by imports made for type annotations (`if TYPE_CHECKING:`,
`import type`) is marked so: it is a dependency for understanding the code, not at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..languages import Languages, language_for_path, parse
from .extract import ImportRef, extract_imports
from .resolve import PathIndex, resolve_import_all


def as_ref(raw: ImportRef | dict) -> ImportRef | None:
    """An ImportRef from a stored row (None for a row written by another version)."""
    if isinstance(raw, ImportRef):
        return raw
    try:
        return ImportRef(**raw)
    except TypeError:
        return None


class ImportGraph:
    def __init__(self, paths: Iterable[str] = ()) -> None:
        self.paths = PathIndex(paths)
        self._refs: dict[str, list[ImportRef]] = {}
        # path -> target -> (0-based row of the first import of it, whether only for types)
        self._targets: dict[str, dict[str, tuple[int, bool]]] = {}
        self.importers: dict[str, set[str]] = {}  # target -> files importing it (types too)

    def set_paths(self, paths: Iterable[str]) -> None:
        """The file set changed: any import may now resolve differently."""
        self.paths = PathIndex(paths)
        for path in list(self._refs):
            self._resolve(path)

    def set_imports(self, path: str, refs: Iterable[ImportRef | dict]) -> bool:
        """A file's imports as written; whether its resolved targets changed."""
        self._refs[path] = [r for r in (as_ref(raw) for raw in refs) if r is not None]
        return self._resolve(path)

    def remove(self, path: str) -> None:
        self._refs.pop(path, None)
        self._drop(path)

    def _resolve(self, path: str) -> bool:
        targets: dict[str, tuple[int, bool]] = {}
        for ref in self._refs[path]:
            for target in resolve_import_all(path, ref, self.paths):
                row, type_only = targets.get(target, (ref.line, True))
                targets[target] = (row, type_only and ref.type_only)
        old = self._targets.get(path)
        if old is not None and old.keys() == targets.keys():
            self._targets[path] = targets  # rows move with edits; the edges stay
            return any(old[t][1] != targets[t][1] for t in targets)
        self._drop(path)
        self._targets[path] = targets
        for target in targets:
            self.importers.setdefault(target, set()).add(path)
        return True

    def _drop(self, path: str) -> None:
        for target in self._targets.pop(path, {}):
            users = self.importers.get(target)
            if users is not None:
                users.discard(path)
                if not users:
                    del self.importers[target]

    def imports_of(self, path: str, include_type_only: bool = True) -> set[str]:
        """The repository files `path` imports."""
        targets = self._targets.get(path, {})
        return {t for t, (_, types) in targets.items() if include_type_only or not types}

    def import_rows(self, path: str) -> dict[str, int]:
        """Files `path` imports at run time -> the row of the first import of each."""
        return {t: row for t, (row, types) in self._targets.get(path, {}).items() if not types}

    def runtime_graph(self) -> dict[str, set[str]]:
        """Every file -> the files it imports at run time (what an import cycle is made of)."""
        return {path: self.imports_of(path, include_type_only=False) for path in self._targets}


def import_graph(files: Mapping[str, str | bytes], languages: Languages | None = None,
                 include_type_only: bool = True) -> dict[str, set[str]]:
    """Each file's imported repository files (every file in `files` is a key), for a mapping
    of path -> source; with `include_type_only=False`, imports made only for type
    annotations are left out."""
    languages = languages or Languages()
    graph = ImportGraph(files)
    parsers = {}
    for path, text in files.items():
        lang = language_for_path(path)
        refs: list[ImportRef] = []
        if lang is not None:
            source = text.encode("utf-8") if isinstance(text, str) else text
            parser = parsers.get(lang) or parsers.setdefault(lang, languages.parser(lang))
            refs = extract_imports(lang, parse(parser, source), source)
        graph.set_imports(path, refs)
    return {path: graph.imports_of(path, include_type_only) for path in files}
