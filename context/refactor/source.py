"""One parsed text for the refactors: its tree, and conversions between the tree's byte
offsets and the code-point offsets every edit record uses."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from tree_sitter import Node

from ..languages import Languages, parse

JS_FAMILY = frozenset({"javascript", "typescript", "tsx"})


class Source:
    def __init__(self, text: str, language: str, languages: Languages) -> None:
        self.text = text
        self.language = language
        self.data = text.encode("utf-8")
        self.tree = parse(languages.parser(language), self.data)
        self.root = self.tree.root_node
        self._ascii = len(self.data) == len(text)
        self._char_starts: list[int] | None = None  # byte offset of every character, when not ASCII
        self._memo: dict[str, object] = {}

    def memo(self, key: str, make):
        """What `make(self)` derives from this text (scopes, reads, definitions), made once:
        one code-action request runs several refactors and verifications on the same text."""
        if key not in self._memo:
            self._memo[key] = make(self)
        return self._memo[key]

    # -- offsets ----------------------------------------------------------------------------

    def _starts(self) -> list[int]:
        if self._char_starts is None:
            starts, at = [], 0
            for ch in self.text:
                starts.append(at)
                at += len(ch.encode("utf-8"))
            starts.append(at)
            self._char_starts = starts
        return self._char_starts

    def char(self, byte: int) -> int:
        """Code-point offset of a byte offset (a byte inside a character counts as its start)."""
        if self._ascii:
            return byte
        return bisect.bisect_right(self._starts(), byte) - 1

    def byte(self, char: int) -> int:
        if self._ascii:
            return char
        return self._starts()[char]

    def span(self, node: Node) -> tuple[int, int]:
        """Code-point offsets of a node."""
        return self.char(node.start_byte), self.char(node.end_byte)

    def node_text(self, node: Node) -> str:
        return self.data[node.start_byte:node.end_byte].decode("utf-8")

    # -- lines ------------------------------------------------------------------------------

    def line_start(self, char: int) -> int:
        return self.text.rfind("\n", 0, char) + 1

    def line_end(self, char: int) -> int:
        """Offset of the line break ending the line holding `char` (or the text's end)."""
        end = self.text.find("\n", char)
        return len(self.text) if end < 0 else end

    def next_line(self, char: int) -> int:
        """Offset of the start of the line after the one holding `char` (or the text's end)."""
        end = self.text.find("\n", char)
        return len(self.text) if end < 0 else end + 1

    def indentation(self, char: int) -> str:
        """The leading whitespace of the line holding `char`."""
        start = self.line_start(char)
        line = self.text[start:self.line_end(char)]
        return line[:len(line) - len(line.lstrip(" \t"))]

    def only_whitespace_before(self, char: int) -> bool:
        return not self.text[self.line_start(char):char].strip()

    # -- nodes ------------------------------------------------------------------------------

    def trim(self, start: int, end: int) -> tuple[int, int]:
        """A selection without the whitespace at its ends."""
        while start < end and self.text[start].isspace():
            start += 1
        while end > start and self.text[end - 1].isspace():
            end -= 1
        return start, end

    def covering(self, start: int, end: int) -> Node:
        """The smallest named node holding the code-point range."""
        node = self.root.named_descendant_for_byte_range(self.byte(start), self.byte(end))
        return node if node is not None else self.root

    def exactly(self, start: int, end: int) -> Node | None:
        """The smallest named node spanning exactly the (trimmed) range, if one does."""
        start, end = self.trim(start, end)
        if start >= end:
            return None
        node = self.covering(start, end)
        return node if self.span(node) == (start, end) else None

    def walk(self, node: Node | None = None) -> Iterator[Node]:
        """Every node under `node` (the root by default), in document order."""
        stack = [node or self.root]
        while stack:
            current = stack.pop()
            yield current
            stack.extend(reversed(current.children))


def swallow_blank_lines(src: Source, end: int) -> int:
    """The end of what is removed when a removal ending at `end` leaves its lines empty: the
    line break after it and the blank lines that follow."""
    end = src.next_line(end)
    while end < len(src.text) and not src.text[end:src.next_line(end)].strip():
        end = src.next_line(end)
    return end


def ancestors(node: Node) -> Iterator[Node]:
    node = node.parent
    while node is not None:
        yield node
        node = node.parent


def field_of(node: Node) -> str | None:
    """The field name under which `node` hangs from its parent."""
    parent = node.parent
    if parent is None:
        return None
    for i, child in enumerate(parent.children):
        if child.id == node.id:
            return parent.field_name_for_child(i)
    return None
