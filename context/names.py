"""Who defines and who uses each name: the lookup tables over the project's symbols.

Kept current file by file as symbols change; `name_log` records which names changed their
defining files at which generation, so the file graph updates only the files using them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .symbols import Definition, FileSymbols


class NameTable:
    def __init__(self) -> None:
        self.defining: dict[str, set[str]] = {}  # name -> files defining it (read-only outside)
        self.generation = 0  # bumps only when the set of names a file defines changes
        self._by_name: dict[str, dict[str, list[Definition]]] = {}  # per file, built on first lookup
        self._users: dict[str, set[str]] | None = None  # name -> files referencing it; built lazily
        # (project generation, names whose defining files changed then)
        self.log: list[tuple[int, frozenset[str]]] = []

    def replace(self, path: str, old: FileSymbols | None, new: FileSymbols | None, generation: int) -> None:
        """`path`'s symbols went from `old` to `new` (None: absent) at project `generation`."""
        old_names = old.defined_names() if old is not None else set()
        new_names = new.defined_names() if new is not None else set()
        if old_names != new_names:
            self.generation += 1
            self.log.append((generation, frozenset(old_names ^ new_names)))
        self._track_users(path, old.references if old is not None else {}, new.references if new is not None else {})
        for name in old_names - new_names:
            paths = self.defining.get(name)
            if paths is not None:
                paths.discard(path)
                if not paths:
                    del self.defining[name]
        for name in new_names:
            self.defining.setdefault(name, set()).add(path)
        self._by_name.pop(path, None)

    def _track_users(self, path: str, old: Mapping[str, int], new: Mapping[str, int]) -> None:
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

    def users_of(self, names: Iterable[str], files: Mapping[str, FileSymbols]) -> set[str]:
        """Files that reference any of `names`."""
        if self._users is None:
            self._users = {}
            for path, symbols in files.items():
                for name in symbols.references:
                    self._users.setdefault(name, set()).add(path)
        out: set[str] = set()
        for name in names:
            out |= self._users.get(name, set())
        return out

    def definitions(self, name: str, files: Mapping[str, FileSymbols]) -> list[tuple[str, Definition]]:
        """Every definition of `name`, sorted by path and line."""
        out = []
        for path in sorted(self.defining.get(name, ())):
            by_name = self._by_name.get(path)
            if by_name is None:
                by_name = self._by_name[path] = {}
                for d in files[path].definitions:
                    by_name.setdefault(d.name, []).append(d)
            out.extend((path, d) for d in by_name.get(name, ()))
        return out

    def trim_log(self) -> None:
        """Everything in the log has been applied by its readers."""
        if len(self.log) > 10_000:
            del self.log[:-1]
