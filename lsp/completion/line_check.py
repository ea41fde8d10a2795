"""Whether a suggestion leaves the cursor's line parseable, when it was parseable before.

A model sometimes writes what the line already has: after `def total_value(self) -> float:`
it offers `:` or `ance:`, which would make `float::`. The site reader parses a window around
the cursor anyway (site.py); when the cursor's line has no syntax error in that parse, it
hands the suggestion filters a `LineCheck`, which parses the window again with a
single-line suggestion inserted and says whether the cursor's line gained an error. A line
that did not parse before (the user is halfway through writing it) is not checked: any
suggestion may be what completes it; nor is a suggestion the token limit cut short (the
service checks only lines the model ended itself).
"""

from __future__ import annotations

from collections.abc import Callable

from tree_sitter import Node, Parser


class LineCheck:
    """The cursor's line in a parsed window; used on whichever thread runs the filters (it
    makes its own parser: parsers hold state)."""

    def __init__(self, new_parser: Callable[[], Parser], window: str, cursor: int, line_start: int,
                 line_end: int) -> None:
        self._new_parser = new_parser
        self._window = window
        self._cursor = cursor  # offsets into `window`, in code points
        self._line = (line_start, line_end)

    def keeps_parsing(self, insert: str, replace: int = 0) -> bool:
        """Whether the line still parses with `insert` (no line break) at the cursor in place
        of the `replace` characters after it."""
        window = self._window[:self._cursor] + insert + self._window[self._cursor + replace:]
        start, end = self._line
        end += len(insert) - replace
        source = window.encode("utf-8", "surrogatepass")
        tree = self._new_parser().parse(source)
        return not error_within(tree.root_node, byte_offset(window, start), byte_offset(window, end))


def error_within(node: Node, start: int, end: int) -> bool:
    """Whether an ERROR or MISSING node overlaps bytes [start, end] of the parsed source."""
    if not node.has_error or node.end_byte < start or node.start_byte > end:
        return False
    if node.is_error or node.is_missing:
        return True
    return any(error_within(child, start, end) for child in node.children)


def byte_offset(text: str, index: int) -> int:
    """Byte offset in UTF-8 of code point `index` (tree-sitter counts bytes)."""
    return len(text[:index].encode("utf-8", "surrogatepass"))
