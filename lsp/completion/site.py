"""Where a completion goes: the cursor's line, what follows, and, from the syntax tree, whether
a suggestion of several lines fits there.

Multi-line suggestions are offered at an empty line and after a block opener (`def f():`,
`{`); a cursor with code after it on its line, or inside a string or a comment, gets one
line. Only a window around the cursor is parsed (tree-sitter recovers from the cut edges), so
the cost does not grow with the file.
"""

from __future__ import annotations

import re
from collections import Counter

from tree_sitter import Node, Parser, Tree

from loopls.context.languages import Languages

from .line_check import LineCheck, byte_offset, error_within
from .postprocess import BLOCK_OPENER, AUTO_CLOSED, Site

WINDOW_BEFORE = 6000  # characters parsed before the cursor
WINDOW_AFTER = 3000
FOLLOWING_CHARS = 2000
BRACE_LANGUAGES = {"javascript", "typescript", "tsx", "java", "go", "rust", "c", "cpp"}
_LITERAL_TYPES = ("string", "comment", "template", "char_literal", "rune_literal", "heredoc", "regex")
_BLOCK_TYPES = ("block", "body", "compound_statement", "declaration_list", "field_declaration_list",
                "statement_block", "object", "switch", "initializer_list", "enumerator_list")
_LEADING = re.compile(r"^([ \t]*)\S", re.M)


class SiteReader:
    """Reads sites; holds a parser per language (parsers are stateful: one reader per thread)."""

    def __init__(self, languages: Languages) -> None:
        self.languages = languages
        self._parsers: dict[str, Parser] = {}

    def _parser(self, language: str) -> Parser:
        if language not in self._parsers:
            self._parsers[language] = self.languages.parser(language)
        return self._parsers[language]

    def read(self, text: str, offset: int, language: str | None) -> Site:
        line_start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
        ends = [i for i in (text.find("\n", offset), text.find("\r", offset)) if i >= 0]
        line_end = min(ends) if ends else len(text)
        prefix_line, suffix_line = text[line_start:offset], text[offset:line_end]
        following = text[line_end:line_end + FOLLOWING_CHARS].lstrip("\r\n")
        above = next((line for line in reversed(text[max(0, line_start - FOLLOWING_CHARS):line_start].splitlines())
                      if line.strip()), "")
        start = max(0, text.rfind("\n", 0, max(0, offset - WINDOW_BEFORE)) + 1)
        window = text[start:min(len(text), offset + WINDOW_AFTER)]
        tree = self._parse(window, language) if language else None
        node = _node_at(tree, window, offset - start) if tree is not None else None
        braces = language in BRACE_LANGUAGES if language else _looks_braced(window)
        check = None
        if tree is not None and not error_within(tree.root_node, byte_offset(window, line_start - start),
                                                 byte_offset(window, line_end - start)):
            check = LineCheck(lambda: self.languages.parser(language), window, offset - start, line_start - start,
                              line_end - start)
        return Site(
            prefix_line=prefix_line,
            suffix_line=suffix_line,
            following=following,
            above=above,
            multiline=_multiline(prefix_line, suffix_line, node),
            indent_unit=indent_unit(window),
            braces=braces,
            block_closed=_block_closed(node) if node is not None else _unmatched_closer(text[offset:offset + WINDOW_AFTER]),
            line_check=check,
            literal=node is not None and _inside_literal(node),
            enclosed=tree is not None and _open_before(tree.root_node, byte_offset(window, line_start - start), braces),
        )

    def _parse(self, window: str, language: str) -> Tree | None:
        try:
            return self._parser(language).parse(window.encode("utf-8", "surrogatepass"))
        except (ValueError, KeyError, ImportError):  # a grammar that cannot load: no tree
            return None


def _node_at(tree: Tree, window: str, cursor: int) -> Node:
    at = byte_offset(window, cursor)
    # the node that ends at the cursor, so `print("x|")` and `# note|` count as inside
    return tree.root_node.descendant_for_byte_range(max(at - 1, 0), at)


def _multiline(prefix_line: str, suffix_line: str, node: Node | None) -> bool:
    if set(suffix_line) - AUTO_CLOSED:
        return False  # code after the cursor on its line: complete the line
    if node is not None and _inside_literal(node):
        return False
    if not prefix_line.strip():
        return True
    if suffix_line.strip():  # only auto-closed characters follow: `{|}` opens a block, `f(|)` does not
        return prefix_line.rstrip().endswith("{")
    return bool(BLOCK_OPENER.search(prefix_line))


def _inside_literal(node: Node) -> bool:
    current: Node | None = node
    while current is not None:
        if any(kind in current.type for kind in _LITERAL_TYPES):
            return True
        current = current.parent
    return False


def _open_before(root: Node, end: int, braces: bool) -> bool:
    """Whether a bracket opened before byte `end` (the cursor's line's start) is still open
    there: a call's arguments or a list's items written one a line. Read from the tokens of
    the nodes around `end` (each one's own brackets, before `end`), so that it holds while
    the brackets' node is an error (the line that closes them is being written); a block's
    `{` does not count in a language of braces."""
    opened = ("(", "[") if braces else ("(", "[", "{")
    node: Node | None = root.descendant_for_byte_range(end, end)
    while node is not None:
        depth = 0
        for child in node.children:
            if child.start_byte >= end:
                break
            if child.is_missing:
                continue
            if child.type in opened:
                depth += 1
            elif child.type in (")", "]", "}") and depth:
                depth -= 1
        if depth:
            return True
        node = node.parent
    return False


def _block_closed(node: Node) -> bool:
    """Whether the innermost braced block around the cursor ends with a real `}` (not one
    tree-sitter made up to recover)."""
    current: Node | None = node
    while current is not None:
        if any(kind in current.type for kind in _BLOCK_TYPES) and current.child_count and \
                current.children[0].type == "{":
            last = current.children[-1]
            return last.type == "}" and not last.is_missing
        current = current.parent
    return False


def _unmatched_closer(after: str) -> bool:
    depth = 0
    for ch in after:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return True
    return False


def _looks_braced(window: str) -> bool:
    lines = [line.rstrip() for line in window.splitlines() if line.strip()]
    return sum(line.endswith("{") for line in lines) > sum(line.endswith(":") for line in lines)


def indent_unit(window: str) -> str:
    """The indentation step of the text: a tab, or the most common step between space widths."""
    indents = [m.group(1) for m in _LEADING.finditer(window) if m.group(1)]
    if not indents:
        return ""
    if sum(i.startswith("\t") for i in indents) * 2 > len(indents):
        return "\t"
    widths = sorted({len(i) for i in indents if "\t" not in i})
    steps = Counter(b - a for a, b in zip([0, *widths], widths) if b > a)
    return " " * steps.most_common(1)[0][0] if steps else ""
