"""What a file imports, as written: per-language extraction from tree-sitter trees.

`extract_imports(lang, tree, source) -> list[ImportRef]`. Resolution to repository files is
`resolve.py`'s job. JavaScript and TypeScript cover ES modules (`import`, `export … from`,
dynamic `import()`) and CommonJS (`require("…")` anywhere, including `module.exports =
require("…")` re-exports); each reference carries the names it binds, so `const {a, b} =
require("./x")` and `import {a} from "./x"` say what they take from the module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from tree_sitter import Node, Query, Tree

from ..languages import Languages, captures_in_slices

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
FAMILY = {"typescript": "javascript", "tsx": "javascript", "cpp": "c"}


@functools.cache
def _import_query(lang: str) -> Query:
    # Compiled queries are immutable; one per grammar for the life of the process.
    return Query(Languages().language(lang), _QUERIES[FAMILY.get(lang, lang)])


def _text(node: Node | None, source: bytes) -> str:
    return "" if node is None else source[node.start_byte:node.end_byte].decode("utf-8", "replace")


def _ref(node: Node, module: str, **kw) -> ImportRef:
    return ImportRef(module, line=node.start_point[0], column=node.start_point[1], **kw)


def extract_imports(lang: str, tree: Tree, source: bytes) -> list[ImportRef]:
    """The imports in a parsed file, in source order. Unknown languages give []."""
    family = FAMILY.get(lang, lang)
    if family not in _QUERIES:
        return []
    extract = _EXTRACTORS[family]
    found: list[tuple[int, ImportRef]] = []
    # in row slices: one query call over a 20,000-statement module held the GIL ~70 ms
    for capture, nodes in captures_in_slices(_import_query(lang), tree.root_node).items():
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
