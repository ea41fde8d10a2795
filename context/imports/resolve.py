"""Resolution of imports to repository files, by path only, like an editor without a build
system.

`resolve_import_all(importer, ref, paths) -> list[str]` / `resolve_import(...) -> str | None`:
the repository file(s) an import refers to, or nothing for external modules (stdlib,
packages, crates). `paths` is a set of repository-relative POSIX paths or a `PathIndex` built
once from them (pass the index when resolving many imports: it holds suffix tables).

Python modules and packages (absolute via any source root, relative by dots), JS/TS relative
specifiers with the usual extensions and `index.*` folders (CommonJS `require("./dir")` and
`require("..")` included), Go import paths matched to package folders by their longest
suffix, Java classes and wildcards by package folders, Rust `mod`/`use` paths from the crate
root, `self` and `super`, and C/C++ `#include` relative to the includer, then by suffix.
Ambiguous suffix matches prefer the candidate nearest to the importer.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterable

from ..languages import language_for_path
from .extract import FAMILY, ImportRef

class PathIndex:
    """Repository paths with the lookup tables resolution needs, built once per path set."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = frozenset(paths)
        self._suffixes: dict[str, list[str]] = defaultdict(list)
        self._dirs: dict[str, list[str]] = defaultdict(list)
        self._dir_suffixes: dict[str, set[str]] = defaultdict(set)
        for path in self.paths:
            parts = path.split("/")
            for i in range(len(parts)):
                self._suffixes["/".join(parts[i:])].append(path)
            folder = posixpath.dirname(path)
            if folder not in self._dirs:
                folder_parts = parts[:-1]
                for i in range(len(folder_parts)):
                    self._dir_suffixes["/".join(folder_parts[i:])].add(folder)
            self._dirs[folder].append(path)

    def by_suffix(self, suffix: str) -> list[str]:
        """Paths equal to `suffix` or ending with `/suffix`."""
        return self._suffixes.get(suffix, [])

    def in_dir(self, folder: str) -> list[str]:
        return self._dirs.get(folder, [])

    def folders_by_suffix(self, suffix: str) -> set[str]:
        """Folders (holding files) equal to `suffix` or ending with `/suffix`."""
        return self._dir_suffixes.get(suffix, set())


def _nearest(importer: str, candidates: Iterable[str]) -> list[str]:
    """Candidates ordered by the longest shared folder prefix with the importer, then path."""
    base = importer.split("/")[:-1]

    def shared(path: str) -> int:
        n = 0
        for a, b in zip(base, path.split("/")[:-1]):
            if a != b:
                break
            n += 1
        return n

    return sorted(set(candidates), key=lambda p: (-shared(p), len(p), p))


def _first_existing(index: PathIndex, options: Iterable[str]) -> list[str]:
    for option in options:
        if option in index.paths:
            return [option]
    return []


def _resolve_python(importer: str, ref: ImportRef, index: PathIndex) -> list[str]:
    module_parts = [p for p in ref.module.split(".") if p]
    tries = [module_parts + [n] for n in ref.names if n and n != "*"] + [module_parts]
    if ref.level:
        package = posixpath.dirname(importer).split("/") if "/" in importer else []
        package = package[: len(package) - (ref.level - 1)] if ref.level > 1 else package
        for parts in tries:
            base = "/".join(package + parts)
            options = [base + ".py", base + ".pyi", base + "/__init__.py", base + "/__init__.pyi"]
            hit = _first_existing(index, [o.lstrip("/") for o in options])
            if hit:
                return hit
        return []
    for parts in tries:
        if not parts:
            continue
        base = "/".join(parts)
        for suffix in (base + ".py", base + ".pyi", base + "/__init__.py", base + "/__init__.pyi"):
            hits = index.by_suffix(suffix)
            if hits:
                return _nearest(importer, hits)[:1]
    return []


_JS_EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")


def _resolve_js(importer: str, ref: ImportRef, index: PathIndex) -> list[str]:
    if not ref.module.startswith("."):
        return []  # packages and path aliases need a bundler configuration
    base = posixpath.normpath(posixpath.join(posixpath.dirname(importer), ref.module))
    stem = base[:-3] if base.endswith(".js") else base
    options = [base] + [base + e for e in _JS_EXTENSIONS] + [base + "/index" + e for e in _JS_EXTENSIONS]
    if stem != base:  # TypeScript sources import "./x.js" that compiles from x.ts
        options += [stem + ".ts", stem + ".tsx"]
    return _first_existing(index, options)


def _resolve_go(importer: str, ref: ImportRef, index: PathIndex) -> list[str]:
    parts = ref.module.split("/")
    if "." not in parts[0]:
        return []  # the standard library has no dot in its first element
    for i in range(len(parts)):
        folders = index.folders_by_suffix("/".join(parts[i:]))
        if folders:
            folder = _nearest(importer, [f + "/x" for f in folders])[0].rpartition("/")[0]
            files = [p for p in index.in_dir(folder) if p.endswith(".go") and not p.endswith("_test.go")]
            if files:
                return sorted(files)
    return []


def _resolve_java(importer: str, ref: ImportRef, index: PathIndex) -> list[str]:
    parts = ref.module.split(".")
    if ref.wildcard:
        folders = index.folders_by_suffix("/".join(parts))
        hits = [p for f in folders for p in index.in_dir(f) if p.endswith(".java")]
        if hits:
            return sorted(hits)
        # `import a.B.*` imports B's nested classes: fall through to the class file.
    while parts:  # a.B.Inner lives in a/B.java
        hits = index.by_suffix("/".join(parts) + ".java")
        if hits:
            return _nearest(importer, hits)[:1]
        parts = parts[:-1]
    return []


def _rust_module_dir(path: str) -> str:
    """The folder holding a Rust file's child modules."""
    folder, name = posixpath.split(path)
    if name in ("mod.rs", "lib.rs", "main.rs"):
        return folder
    return posixpath.join(folder, name[:-3])


def _rust_crate_root(importer: str, index: PathIndex) -> str | None:
    folder = posixpath.dirname(importer)
    while True:
        if any(posixpath.join(folder, n) in index.paths for n in ("lib.rs", "main.rs")):
            return folder
        if not folder:
            return None
        folder = posixpath.dirname(folder)


def _resolve_rust(importer: str, ref: ImportRef, index: PathIndex) -> list[str]:
    segments = ref.module.split("::")
    head, rest = segments[0], segments[1:]
    if head == "crate":
        base = _rust_crate_root(importer, index)
    elif head == "self":
        base = _rust_module_dir(importer)
    elif head == "super":
        base = posixpath.dirname(_rust_module_dir(importer))
    else:
        base, rest = _rust_module_dir(importer), segments  # a child module named like the path
    while base is not None and rest and rest[0] == "super":
        base, rest = posixpath.dirname(base), rest[1:]
    if base is None:
        return []
    for k in range(len(rest), 0, -1):
        stem = posixpath.join(base, *rest[:k])
        hit = _first_existing(index, [stem + ".rs", stem + "/mod.rs"])
        if hit:
            return hit
    return []


def _resolve_c(importer: str, ref: ImportRef, index: PathIndex) -> list[str]:
    if not ref.system:
        local = posixpath.normpath(posixpath.join(posixpath.dirname(importer), ref.module))
        if local in index.paths:
            return [local]
    elif "/" not in ref.module:
        return []  # <stdio.h> and friends
    return _nearest(importer, index.by_suffix(posixpath.normpath(ref.module)))[:1]


_RESOLVERS = {"python": _resolve_python, "javascript": _resolve_js, "go": _resolve_go,
              "java": _resolve_java, "rust": _resolve_rust, "c": _resolve_c}


def resolve_import_all(importer: str, ref: ImportRef, paths: set[str] | frozenset[str] | PathIndex) -> list[str]:
    """Every repository file the import refers to (a Go package or Java wildcard is many)."""
    index = paths if isinstance(paths, PathIndex) else PathIndex(paths)
    lang = language_for_path(importer)
    resolver = _RESOLVERS.get(FAMILY.get(lang, lang)) if lang else None
    if resolver is None:
        return []
    return [p for p in resolver(importer, ref, index) if p != importer]


def resolve_import(importer: str, ref: ImportRef, paths: set[str] | frozenset[str] | PathIndex) -> str | None:
    """The repository file an import refers to, or None for external or unknown modules."""
    hits = resolve_import_all(importer, ref, paths)
    return hits[0] if hits else None
