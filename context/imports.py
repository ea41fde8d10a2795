"""Imports per language, read from tree-sitter trees, and their resolution to repository files.

API:
- `extract_imports(lang, tree, source) -> list[ImportRef]`: what a file imports, as written.
- `resolve_import(importer, ref, paths) -> str | None` / `resolve_import_all(...) -> list[str]`:
  the repository file(s) an import refers to, or nothing for external modules (stdlib,
  packages, crates). `paths` is a set of repository-relative POSIX paths or a `PathIndex`
  built once from them (pass the index when resolving many imports: it holds suffix tables).
- `import_graph(files) -> dict[str, set[str]]`: file -> files it imports, for a mapping of
  path -> source text.

Resolution is by path only, like an editor without a build system: Python modules and
packages (absolute via any source root, relative by dots), JS/TS relative specifiers with
the usual extensions and `index.*`, Go import paths matched to package folders by their
longest suffix, Java classes and wildcards by package folders, Rust `mod`/`use` paths from
the crate root, `self` and `super`, and C/C++ `#include` relative to the includer, then by
suffix. Ambiguous suffix matches prefer the candidate nearest to the importer.
"""

from __future__ import annotations

import functools
import posixpath
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tree_sitter import Node, Query, QueryCursor, Tree

from .languages import Languages, language_for_path


@dataclass(frozen=True)
class ImportRef:
    module: str  # as written: "a.b", "./x", "github.com/o/r/pkg", "com.foo.Bar", "crate::a::B", "x.h"
    names: tuple[str, ...] = ()  # imported names (Python `from m import a, b`), if any
    level: int = 0  # Python relative-import dots
    line: int = 0  # 0-based row of the import statement
    column: int = 0  # 0-based byte column
    system: bool = False  # C/C++ `#include <...>`
    wildcard: bool = False  # `from m import *`, `import a.b.*`, `use a::*`
    type_only: bool = False  # under `if TYPE_CHECKING:` (Python) or `import type` (TypeScript)


_QUERIES = {
    "python": "[(import_statement) (import_from_statement)] @imp",
    "javascript": "(import_statement) @imp (export_statement source: (_)) @imp (call_expression) @call",
    "go": "(import_spec) @imp",
    "java": "(import_declaration) @imp",
    "rust": "(use_declaration) @imp (mod_item) @mod",
    "c": "(preproc_include) @imp",
}
_FAMILY = {"typescript": "javascript", "tsx": "javascript", "cpp": "c"}


@functools.cache
def _import_query(lang: str) -> Query:
    # Compiled queries are immutable; one per grammar for the life of the process.
    return Query(Languages().language(lang), _QUERIES[_FAMILY.get(lang, lang)])


def _text(node: Node | None, source: bytes) -> str:
    return "" if node is None else source[node.start_byte:node.end_byte].decode("utf-8", "replace")


def _ref(node: Node, module: str, **kw) -> ImportRef:
    return ImportRef(module, line=node.start_point[0], column=node.start_point[1], **kw)


def extract_imports(lang: str, tree: Tree, source: bytes) -> list[ImportRef]:
    """The imports in a parsed file, in source order. Unknown languages give []."""
    family = _FAMILY.get(lang, lang)
    if family not in _QUERIES:
        return []
    extract = _EXTRACTORS[family]
    found: list[tuple[int, ImportRef]] = []
    for capture, nodes in QueryCursor(_import_query(lang)).captures(tree.root_node).items():
        for node in nodes:
            found.extend((node.start_byte, r) for r in extract(capture, node, source))
    found.sort(key=lambda item: item[0])
    return [r for _, r in found]


def _type_checking_only(node: Node, source: bytes) -> bool:
    """Inside `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): imported for annotations only."""
    parent = node.parent
    while parent is not None:
        if parent.type == "if_statement":
            condition = _text(parent.child_by_field_name("condition"), source)
            if condition in ("TYPE_CHECKING", "typing.TYPE_CHECKING", "t.TYPE_CHECKING"):
                return True
        parent = parent.parent
    return False


def _python(capture: str, node: Node, source: bytes) -> list[ImportRef]:
    type_only = _type_checking_only(node, source)
    if node.type == "import_statement":
        refs = []
        for name in node.children_by_field_name("name"):
            dotted = name.child_by_field_name("name") if name.type == "aliased_import" else name
            refs.append(_ref(node, _text(dotted, source), type_only=type_only))
        return refs
    module = node.child_by_field_name("module_name")
    level, dotted = 0, module
    if module is not None and module.type == "relative_import":
        prefix = next((c for c in module.children if c.type == "import_prefix"), None)
        level = len(_text(prefix, source).strip())
        dotted = next((c for c in module.children if c.type == "dotted_name"), None)
    names = []
    for name in node.children_by_field_name("name"):
        target = name.child_by_field_name("name") if name.type == "aliased_import" else name
        names.append(_text(target, source))
    wildcard = any(c.type == "wildcard_import" for c in node.children)
    return [_ref(node, _text(dotted, source), names=tuple(names), level=level, wildcard=wildcard,
                 type_only=type_only)]


def _string_value(node: Node, source: bytes) -> str:
    return _text(node, source).strip("'\"`")


def _javascript(capture: str, node: Node, source: bytes) -> list[ImportRef]:
    if capture == "call":
        fn = node.child_by_field_name("function")
        args = node.child_by_field_name("arguments")
        if fn is None or args is None or _text(fn, source) not in ("require", "import"):
            return []
        first = args.named_children[0] if args.named_children else None
        if first is None or first.type != "string":
            return []
        return [_ref(node, _string_value(first, source))]
    src = node.child_by_field_name("source")
    if src is None:  # TypeScript `import x = require("./r")` keeps its source one level down
        clause = next((c for c in node.named_children if c.type == "import_require_clause"), None)
        src = clause.child_by_field_name("source") if clause is not None else None
    type_only = any(c.type == "type" for c in node.children)  # `import type {T} from "./t"`
    return [_ref(node, _string_value(src, source), type_only=type_only)] if src is not None else []


def _go(capture: str, node: Node, source: bytes) -> list[ImportRef]:
    path = node.child_by_field_name("path")
    return [_ref(node, _string_value(path, source))] if path is not None else []


def _java(capture: str, node: Node, source: bytes) -> list[ImportRef]:
    name = next((c for c in node.named_children if c.type in ("scoped_identifier", "identifier")), None)
    if name is None:
        return []
    wildcard = any(c.type == "asterisk" for c in node.children)
    static = any(c.type == "static" for c in node.children)
    module = _text(name, source)
    if static and not wildcard:  # `import static a.B.m`: the class is a.B
        module = module.rpartition(".")[0]
    return [_ref(node, module, wildcard=wildcard)]


def _rust_paths(node: Node, source: bytes, prefix: str) -> list[tuple[str, bool]]:
    """Full paths of a use tree: `a::{b, c::d}` -> a::b, a::c::d (wildcards flagged)."""
    kind = node.type
    join = (lambda s: f"{prefix}::{s}" if prefix else s)
    if kind == "use_as_clause":
        inner = node.child_by_field_name("path")
        return _rust_paths(inner, source, prefix) if inner is not None else []
    if kind == "use_wildcard":
        inner = node.named_children[0] if node.named_children else None
        return [(join(_text(inner, source)) if inner is not None else prefix, True)]
    if kind == "scoped_use_list":
        path = node.child_by_field_name("path")
        inner = node.child_by_field_name("list")
        base = join(_text(path, source)) if path is not None else prefix
        return _rust_paths(inner, source, base) if inner is not None else []
    if kind == "use_list":
        return [p for child in node.named_children for p in _rust_paths(child, source, prefix)]
    if kind == "self":
        return [(prefix, False)]
    return [(join(_text(node, source)), False)]


def _rust(capture: str, node: Node, source: bytes) -> list[ImportRef]:
    if capture == "mod":
        if node.child_by_field_name("body") is not None:
            return []
        return [_ref(node, "self::" + _text(node.child_by_field_name("name"), source))]
    argument = node.child_by_field_name("argument")
    if argument is None:
        return []
    return [_ref(node, path, wildcard=wild) for path, wild in _rust_paths(argument, source, "")]


def _c(capture: str, node: Node, source: bytes) -> list[ImportRef]:
    path = node.child_by_field_name("path")
    if path is None:
        return []
    system = path.type == "system_lib_string"
    return [_ref(node, _text(path, source).strip('"<>'), system=system)]


_EXTRACTORS = {"python": _python, "javascript": _javascript, "go": _go, "java": _java, "rust": _rust, "c": _c}


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
    resolver = _RESOLVERS.get(_FAMILY.get(lang, lang)) if lang else None
    if resolver is None:
        return []
    return [p for p in resolver(importer, ref, index) if p != importer]


def resolve_import(importer: str, ref: ImportRef, paths: set[str] | frozenset[str] | PathIndex) -> str | None:
    """The repository file an import refers to, or None for external or unknown modules."""
    hits = resolve_import_all(importer, ref, paths)
    return hits[0] if hits else None


def import_graph(files: Mapping[str, str | bytes], languages: Languages | None = None,
                 include_type_only: bool = True) -> dict[str, set[str]]:
    """Each file's imported repository files (every file in `files` is a key); with
    `include_type_only=False`, imports made only for type annotations are left out."""
    languages = languages or Languages()
    index = PathIndex(files)
    parsers = {}
    graph: dict[str, set[str]] = {}
    for path, text in files.items():
        graph[path] = set()
        lang = language_for_path(path)
        if lang is None:
            continue
        source = text.encode("utf-8") if isinstance(text, str) else text
        parser = parsers.get(lang) or parsers.setdefault(lang, languages.parser(lang))
        tree = parser.parse(source)
        for ref in extract_imports(lang, tree, source):
            if include_type_only or not ref.type_only:
                graph[path].update(resolve_import_all(path, ref, index))
    return graph
