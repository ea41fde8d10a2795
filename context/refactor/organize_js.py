"""Organize imports for JavaScript and TypeScript (`source.organizeImports`), as
TypeScript's own organizer does: within each group of consecutive imports (a blank line,
a side-effect import such as `import "./polyfill"` or an `import x = require()` ends a group),
imports are sorted by module specifier, imports of one module are merged, their names
sorted, and names nothing reads are removed (a whole import when none is left).

Kept as they are, only moved: statements with a comment inside, namespace imports
(`* as ns`), and side-effect imports (never moved: they run in order). In a file with JSX, a
default import named `React` counts as read (the classic JSX runtime needs it). Quotes and
semicolons follow the statements being organized.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tree_sitter import Node

from .edits import Refactoring
from .jsscope import js_scopes
from .organize import organized
from .source import Source

LINE_LENGTH = 100


@dataclass
class _Import:
    node: Node
    module: str
    type_only: bool = False
    default: str | None = None
    named: list[tuple[str, str | None, bool]] = field(default_factory=list)  # (name, alias, type-only)
    opaque: str | None = None
    multiline: bool = False


def organize_js(src: Source) -> list[Refactoring]:
    used = _used_names(src)
    return organized(src, ((src.span(group[0])[0], src.span(group[-1])[1],
                            _render(src, [_parse(src, node) for node in group], used))
                           for group in _groups(src)))


def _groups(src: Source) -> list[list[Node]]:
    groups: list[list[Node]] = []
    current: list[Node] = []
    for node in src.root.named_children:
        barrier = node.type != "import_statement" or _side_effect(node) or \
            any(c.type == "import_require_clause" for c in node.named_children)
        separated = bool(current) and node.start_point.row > current[-1].end_point.row + 1
        if barrier or separated or not src.only_whitespace_before(src.span(node)[0]):
            if current:
                groups.append(current)
            current = [] if barrier else [node]
        else:
            current.append(node)
    if current:
        groups.append(current)
    return groups


def _side_effect(node: Node) -> bool:
    return not any(c.type in ("import_clause", "import_require_clause") for c in node.named_children)


def _parse(src: Source, node: Node) -> _Import:
    source = node.child_by_field_name("source")
    module = src.node_text(source)[1:-1] if source is not None else ""
    imp = _Import(node, module, multiline=node.end_point.row > node.start_point.row)
    imp.type_only = any(not c.is_named and c.type == "type" for c in node.children)
    clause = next((c for c in node.named_children if c.type == "import_clause"), None)
    if clause is None or any(c.type == "comment" for c in src.walk(node)) or \
            any(c.type == "namespace_import" for c in clause.named_children):
        imp.opaque = src.node_text(node)
        return imp
    for part in clause.named_children:
        if part.type == "identifier":
            imp.default = src.node_text(part)
        elif part.type == "named_imports":
            for spec in part.named_children:
                if spec.type != "import_specifier":
                    continue
                name = spec.child_by_field_name("name")
                alias = spec.child_by_field_name("alias")
                typed = any(not c.is_named and c.type == "type" for c in spec.children)
                imp.named.append((src.node_text(name), src.node_text(alias) if alias is not None else None, typed))
    return imp


def _used_names(src: Source) -> set[str]:
    scopes = js_scopes(src)
    used = {u.name for u in scopes.uses if not u.bind and scopes.resolve(u.name, u.scope) is scopes.module}
    if any(n.type in ("jsx_element", "jsx_self_closing_element", "jsx_fragment") for n in src.walk()):
        used.add("React")
    return used


def _style(src: Source, imports: list[_Import]) -> tuple[str, str, str]:
    """(quote, statement end, indentation of multi-line named imports) of these statements."""
    first = src.node_text(imports[0].node)
    source = imports[0].node.child_by_field_name("source")
    quote = src.node_text(source)[0] if source is not None else '"'
    indent = "  "
    for imp in imports:
        if imp.multiline and imp.named:
            line = src.text[src.line_start(src.span(imp.node)[0]):].split("\n", 2)
            if len(line) > 1:
                indent = line[1][:len(line[1]) - len(line[1].lstrip())] or indent
            break
    return quote, ";" if first.rstrip().endswith(";") else "", indent


def _render(src: Source, imports: list[_Import], used: set[str]) -> str:
    quote, end, indent = _style(src, imports)
    merged: dict[tuple[str, bool], _Import] = {}
    out: list[tuple[str, str]] = []
    for imp in imports:
        if imp.opaque is not None:
            out.append((imp.module.lower(), imp.opaque))
            continue
        key = (imp.module, imp.type_only)
        target = merged.setdefault(key, _Import(imp.node, imp.module, imp.type_only))
        target.multiline = target.multiline or imp.multiline
        if imp.default is not None and imp.default in used:
            if target.default not in (None, imp.default):
                out.append((imp.module.lower(), _statement(imp.module, imp.type_only, imp.default, [], quote, end,
                                                           indent, False)))
            else:
                target.default = imp.default
        for spec in imp.named:
            local = spec[1] or spec[0]
            if local in used and spec not in target.named:
                target.named.append(spec)
    for (module, type_only), imp in merged.items():
        if imp.default is None and not imp.named:
            continue  # nothing it imports is read
        imp.named.sort(key=lambda s: (s[0].lower(), s[0], s[1] or ""))
        out.append((module.lower(), _statement(module, type_only, imp.default, imp.named, quote, end, indent,
                                               imp.multiline)))
    out.sort(key=lambda item: (item[0], item[1]))
    return "\n".join(text for _, text in out)


def _statement(module: str, type_only: bool, default: str | None, named: list[tuple[str, str | None, bool]],
               quote: str, end: str, indent: str, multiline: bool) -> str:
    parts = [("type " if typed else "") + name + (f" as {alias}" if alias else "") for name, alias, typed in named]
    head = "import " + ("type " if type_only else "")
    clause = default or ""
    tail = f" from {quote}{module}{quote}{end}"
    if not parts:
        return head + clause + tail
    inline = head + clause + (", " if clause else "") + "{ " + ", ".join(parts) + " }" + tail
    if not multiline and len(inline) <= LINE_LENGTH:
        return inline
    block = "{\n" + "".join(f"{indent}{p},\n" for p in parts) + "}"
    return head + clause + (", " if clause else "") + block + tail
