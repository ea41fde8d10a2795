"""The text of an extracted function and where it goes: the new `def` with the selected code
re-indented (lines inside multi-line strings kept as they are, since their indentation is
part of the string) and its place in the file, with the blank lines PEP 8 asks for."""

from __future__ import annotations

import re

from tree_sitter import Node

from .source import Source


def definition(src: Source, nodes: list[Node], expression: bool, name: str, params: list[str], returns: list[str],
               is_async: bool, self_name: str | None, flavour: str | None, base: str) -> str:
    """The new `def` holding `nodes` (statements, or one expression it returns), indented to
    `base`, each line ending in a line break. `flavour` is how a method takes its object
    (`instance`, `class`, `static`, `static-via-first`), None for a function."""
    unit = _indent_unit(src)
    all_params = ([self_name] if flavour in ("instance", "class") and self_name else []) + params
    lines = []
    if flavour in ("static", "static-via-first"):
        lines.append(base + "@staticmethod")
    elif flavour == "class":
        lines.append(base + "@classmethod")
    lines.append(f"{base}{'async ' if is_async else ''}def {name}({', '.join(all_params)}):")
    if expression:
        lines.append(base + unit + "return " + src.node_text(nodes[0]))
    else:
        for line in _dedented_lines(src, nodes):
            lines.append(line if isinstance(line, _Frozen) else base + unit + line if line.strip() else "")
        if returns:
            lines.append(base + unit + "return " + ", ".join(returns))
    return "\n".join(lines) + "\n"


def _indent_unit(src: Source) -> str:
    """The file's indentation step: that of the first indented block, else four spaces."""
    match = re.search(r"^[^\s#][^\n]*:[ \t]*(?:#[^\n]*)?\n(?:[ \t]*\n)*([ \t]+)\S", src.text, re.M)
    return match.group(1) if match else "    "


def _dedented_lines(src: Source, nodes: list[Node]) -> list[str]:
    """The statements' lines without the indentation of their block; lines that continue a
    multi-line string are left exactly as they are."""
    start = src.line_start(src.span(nodes[0])[0])
    end = src.span(nodes[-1])[1]
    lines = src.text[start:end].split("\n")
    indent = src.indentation(src.span(nodes[0])[0])
    first_row = nodes[0].start_point.row
    frozen = _rows_inside_strings(src, nodes)
    out = []
    for i, line in enumerate(lines):
        if first_row + i in frozen:
            out.append(_Frozen(line))
        elif line.startswith(indent):
            out.append(line[len(indent):])
        else:
            out.append(line.lstrip(" \t"))
    return out


class _Frozen(str):
    """A line inside a multi-line string: it takes no indentation."""


def _rows_inside_strings(src: Source, nodes: list[Node]) -> set[int]:
    rows: set[int] = set()
    for top in nodes:
        for node in src.walk(top):
            if node.type == "string" and node.end_point.row > node.start_point.row:
                rows.update(range(node.start_point.row + 1, node.end_point.row + 1))
    return rows


def placement(src: Source, first: Node, method: Node | None) -> tuple[int, str, str, str]:
    """(where the new definition goes, its base indentation, and the text before and after it):
    after the method `method` (the function node) in its class, else before the top-level
    statement holding `first`."""
    if method is not None:
        function = method
        outer = function.parent if function.parent is not None and function.parent.type == "decorated_definition" \
            else function
        at = src.next_line(src.span(function)[1])
        lead = "\n" if at == len(src.text) and not src.text.endswith("\n") else ""
        return at, src.indentation(src.span(outer)[0]), lead + "\n", ""
    top = first
    while top.parent is not None and top.parent.type != "module":
        top = top.parent
    at = src.line_start(src.span(top)[0])
    while at > 0:  # keep comments right above the statement with it
        previous = src.line_start(at - 1)
        if not src.text[previous:at].lstrip().startswith("#"):
            break
        at = previous
    blank_before, probe = 0, at
    while probe > 0 and not src.text[src.line_start(probe - 1):probe].strip():
        blank_before += 1
        probe = src.line_start(probe - 1)
    return at, "", "" if probe == 0 else "\n" * max(0, 2 - blank_before), "\n\n"
