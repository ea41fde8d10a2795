"""Organize imports for Python (`source.organizeImports`): each run of module-level import
statements is sorted and grouped as ruff's and isort's defaults do — `__future__`, standard
library, third-party, first-party, relative — with `import x` lines before `from x import`
lines in each group, `from` imports of one module merged (aliased names on their own lines),
names ordered constants, classes, then the rest, and unused imports removed.

An import is unused when no read in the module resolves to it and `__all__`, string
annotations and `# type:` comments do not name it. Never removed: anything in an
`__init__.py` (its imports are its interface), `import x as x` re-exports, star imports, and
statements carrying a comment (`# noqa` says the import is wanted); those keep their text and
only move. Comment lines right above an import move with it.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tree_sitter import Node

from .edits import Refactoring
from .pyscope import python_scopes
from .organize import organized
from .source import Source

LINE_LENGTH = 88
STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | {"__future__"}
_IMPORTS = frozenset({"import_statement", "import_from_statement", "future_import_statement"})
_TYPE_COMMENT = re.compile(r"#\s*type:(.*)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class _Statement:
    node: Node
    comments_above: list[str]  # whole comment lines that move with it
    opaque: str | None = None  # kept verbatim (it carries a comment, or is a star import)
    module: str = ""  # dotted, with leading dots for relative imports
    is_from: bool = False
    names: list[tuple[str, str | None]] = field(default_factory=list)  # (name, alias)


def organize_python(src: Source, path: str, first_party: frozenset[str] = frozenset()) -> list[Refactoring]:
    runs = _runs(src)
    if not runs:
        return []
    keep_all = PurePosixPath(path).name == "__init__.py"
    used = _used_names(src)
    return organized(src, ((src.line_start(src.span(run[0][0])[0]),
                            src.line_end(src.span(_last_node(src, run[-1][0]))[1]),
                            _render([_parse(src, node, above) for node, above in run], used, keep_all, first_party, src))
                           for run in runs))


def _runs(src: Source) -> list[list[tuple[Node, list[str]]]]:
    """Runs of consecutive module-level imports, each with the comment lines above it (inside
    the run; comments above a run's first import stay where they are)."""
    runs: list[list[tuple[Node, list[str]]]] = []
    current: list[tuple[Node, list[str]]] = []
    pending: list[str] = []
    previous_row = -2
    for node in src.root.named_children:
        if node.type == "comment":
            if current and node.start_point.row == previous_row:
                continue  # a trailing comment: part of the statement before it
            pending.append(src.node_text(node))
            continue
        if node.type in _IMPORTS and src.only_whitespace_before(src.span(node)[0]):
            current.append((node, pending if current else []))
            previous_row = node.end_point.row
        else:
            if current:
                runs.append(current)
            current = []
            previous_row = -2
        pending = []
    if current:
        runs.append(current)
    return runs


def _last_node(src: Source, node: Node) -> Node:
    """The statement, or the comment trailing it on its last line."""
    following = node.next_named_sibling
    if following is not None and following.type == "comment" and following.start_point.row == node.end_point.row:
        return following
    return node


def _parse(src: Source, node: Node, above: list[str]) -> _Statement:
    statement = _Statement(node, above)
    last = _last_node(src, node)
    if last is not node or any(c.type == "comment" for c in src.walk(node)) or \
            any(c.type == "wildcard_import" for c in node.named_children):
        statement.opaque = src.text[src.span(node)[0]:src.span(last)[1]]
    module = node.child_by_field_name("module_name")
    statement.is_from = node.type != "import_statement"
    statement.module = src.node_text(module).replace(" ", "") if module is not None else ""
    for child in node.named_children:
        if module is not None and child.id == module.id:
            continue
        if child.type == "aliased_import":
            statement.names.append((src.node_text(child.child_by_field_name("name")),
                                    src.node_text(child.child_by_field_name("alias"))))
        elif child.type == "dotted_name":
            statement.names.append((src.node_text(child), None))
    if statement.module == "__future__" or node.type == "future_import_statement":
        statement.module, statement.is_from = "__future__", True
    return statement


def _used_names(src: Source) -> set[str]:
    """Names read at module level or below that an import could bind, plus the names that
    `__all__`, string annotations and type comments mention."""
    scopes = python_scopes(src)
    used = {u.name for u in scopes.uses if not u.bind and scopes.resolve(u.name, u.scope) is scopes.module}
    for node in src.walk():
        if node.type == "comment":
            match = _TYPE_COMMENT.search(src.node_text(node))
            if match:
                used.update(_WORD.findall(match.group(1)))
        elif node.type == "string" and _in_annotation_or_all(src, node):
            used.update(_WORD.findall(src.node_text(node)))
    return used


def _in_annotation_or_all(src: Source, node: Node) -> bool:
    parent = node
    while parent is not None:
        if parent.type == "type":
            return True
        if parent.type == "assignment":
            left = parent.child_by_field_name("left")
            return left is not None and src.node_text(left) == "__all__"
        parent = parent.parent
    return False


def _bound_name(name: str, alias: str | None, is_from: bool) -> str:
    return alias if alias else (name if is_from else name.split(".")[0])


def _section(module: str, first_party: frozenset[str]) -> int:
    if module == "__future__":
        return 0
    if module.startswith("."):
        return 4
    top = module.split(".")[0]
    if top in first_party:
        return 3
    return 1 if top in STDLIB else 2


def _name_key(name: str) -> tuple[int, str, str]:
    """ruff's order-by-type: CONSTANTS, then Classes, then everything else."""
    rank = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return rank, name.lower(), name


def _module_key(module: str) -> tuple[int, str, str]:
    dots = len(module) - len(module.lstrip("."))
    return -dots, module.lstrip(".").lower(), module


def _render(statements: list[_Statement], used: set[str], keep_all: bool, first_party: frozenset[str],
            src: Source) -> str:
    # (section, 0 for `import`, 1 for `from`, module key, text) per output statement
    lines: list[tuple[int, int, tuple, list[str], str]] = []
    merged: dict[str, list[tuple[str, str | None]]] = {}
    merged_comments: dict[str, list[str]] = {}
    seen: set[tuple[str, str, str | None, bool]] = set()
    for st in statements:
        section = _section(st.module if st.is_from else (st.names[0][0] if st.names else ""), first_party)
        if st.opaque is not None:
            key = _module_key(st.module if st.is_from else (st.names[0][0] if st.names else ""))
            lines.append((section, int(st.is_from), key, st.comments_above, st.opaque))
            continue
        for name, alias in st.names:
            if (st.module, name, alias, st.is_from) in seen:
                continue
            seen.add((st.module, name, alias, st.is_from))
            bound = _bound_name(name, alias, st.is_from)
            keep = keep_all or st.module == "__future__" or bound in used or (alias is not None and alias == name)
            if not keep:
                continue
            if not st.is_from:
                text = f"import {name}" + (f" as {alias}" if alias else "")
                lines.append((_section(name, first_party), 0, _module_key(name), st.comments_above, text))
                st.comments_above = []
            elif alias:
                text = _from_line(st.module, [(name, alias)])
                lines.append((section, 1, _module_key(st.module), st.comments_above, text))
                st.comments_above = []
            else:
                merged.setdefault(st.module, []).append((name, None))
                merged_comments.setdefault(st.module, []).extend(st.comments_above)
                st.comments_above = []
    for module, names in merged.items():
        names.sort(key=lambda n: _name_key(n[0]))
        lines.append((_section(module, first_party), 1, _module_key(module), merged_comments[module],
                      _from_line(module, names)))
    lines.sort(key=lambda item: (item[0], item[1], item[2], item[4]))
    out: list[str] = []
    previous = None
    for section, _, _, comments, text in lines:
        if previous is not None and section != previous:
            out.append("")
        out.extend(comments)
        out.append(text)
        previous = section
    return "\n".join(out)


def _from_line(module: str, names: list[tuple[str, str | None]]) -> str:
    parts = [name + (f" as {alias}" if alias else "") for name, alias in names]
    line = f"from {module} import {', '.join(parts)}"
    if len(line) <= LINE_LENGTH:
        return line
    return f"from {module} import (\n" + "".join(f"    {p},\n" for p in parts) + ")"


def first_party_modules(root: Path) -> frozenset[str]:
    """Top-level modules and packages of a project (in its root and in `src/`): what its own
    imports start with."""
    names = set()
    for folder in (root, root / "src"):
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.isidentifier() and not entry.name.endswith(".py"):
                continue
            if entry.suffix == ".py" and entry.stem.isidentifier():
                names.add(entry.stem)
            elif entry.is_dir() and entry.name.isidentifier() and (
                    (entry / "__init__.py").exists() or any(entry.glob("*.py"))):
                names.add(entry.name)
    return frozenset(names)
