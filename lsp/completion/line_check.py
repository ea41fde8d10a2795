"""Whether a suggestion leaves the cursor's line parseable, when it was parseable before.

A model sometimes writes what the line already has: after `def total_value(self) -> float:`
it offers `:` or `ance:`, which would make `float::`. The site reader parses a window around
the cursor anyway (site.py); when the cursor's line has no syntax error in that parse, it
hands the suggestion filters a `LineCheck`, which parses the window again with the
suggestion inserted and says whether the cursor's line gained an error. A suggestion of
several lines is dropped only when both its first line alone and the whole of it leave an
error on the cursor's line: a first line may open what a later line closes (`x = [` ...
`]`), but `float:` + `:` and a body is `float::` whatever follows (at the line's end,
`postprocess.finish` then offers the body alone). A line that did not parse
before (the user is halfway through writing it) is not checked: any suggestion may be what
completes it; nor is a suggestion the token limit cut short (the service checks only text
the model ended itself).
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

    def accepts(self, text: str, replace: int = 0) -> bool:
        """Whether the suggestion `text` (replacing `replace` characters after the cursor)
        leaves the cursor's line without a syntax error, or, for several lines, its first
        line does or the whole suggestion closes what that line left open."""
        first = text.split("\n", 1)[0]
        if first == text:
            return self.keeps_parsing(text, replace)
        # closed at once, the brackets the first line opens are no error of its own
        return self.keeps_parsing(first + closers(first)) or self.keeps_parsing(text, replace)

    def keeps_parsing(self, insert: str, replace: int = 0) -> bool:
        """Whether the line still parses with `insert` at the cursor in place of the
        `replace` characters after it. With a line break in `insert`, the cursor's line ends
        where the first line of `insert` does."""
        window = self._window[:self._cursor] + insert + self._window[self._cursor + replace:]
        start, end = self._line
        if "\n" in insert:
            end = self._cursor + insert.index("\n")
        else:
            end += len(insert) - replace
        source = window.encode("utf-8", "surrogatepass")
        tree = self._new_parser().parse(source)
        return not error_within(tree.root_node, byte_offset(window, start), byte_offset(window, end))


_PAIRS = {"(": ")", "[": "]", "{": "}"}


def closers(line: str) -> str:
    """The closing brackets of those `line` leaves open, innermost first (quotes are not
    tracked: a bracket in a string counts too, which at worst keeps a suggestion)."""
    stack: list[str] = []
    for ch in line:
        if ch in _PAIRS:
            stack.append(_PAIRS[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
    return "".join(reversed(stack))


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
