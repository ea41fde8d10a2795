"""Open documents parsed incrementally: each edit is applied to the tree (`tree.edit`), the
next parse reuses the unchanged parts of the old tree, and the symbols are updated only where
the edit and the parser say something changed.

The edits since the last symbol update count as one: the span they changed, merged edit by
edit (text before it and after it is the same as at that update), and the parser's changed
ranges between the tree of that update (edited along) and the current one. With R the rows
of that span or of those ranges: definitions outside R keep their entries (shifted by the
lines the edits added or removed), and the definitions query runs on R alone (it also
yields definitions enclosing R); references are re-counted on the changed lines only; chunk
terms are reused for unchanged chunk texts; imports are re-read only when the change
touches an import. So the symbols of a long file may be brought up to date after a burst of
typing, at the cost of one update (`Project` defers them so). A tree with very many
top-level nodes is not diffed (see CHANGED_RANGES_MAX_CHILDREN): its symbols are extracted
afresh. Either way the result equals a cold parse of the same text
(tests/context/test_context_index.py).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from tree_sitter import Node, Point, Tree

from .languages import Languages, language_for_path, parse
from .symbols import (IDENTIFIER, Definition, FileSymbols, chunk_lines, definitions_of, extract, imports_of,
                      unique_definitions)

_IMPORTISH = ("import", "include", "use_declaration", "extern_crate", "require")
_JS_FAMILY = {"javascript", "typescript", "tsx"}
_IMPORT_WORD = re.compile(r"\b(?:import|require|include|use|from|extern|mod)\b")
_IMPORT_WORD_BYTES = re.compile(_IMPORT_WORD.pattern.encode())
# Trees whose root has more children are not diffed with `Tree.changed_ranges`: that one C
# call walks every child of the root holding the GIL (14.5 ms of CPU for 20,000 top-level
# statements; with the machine loaded, the thread is descheduled while it holds the GIL and
# the event loop waited 200-600 ms). Their symbols are extracted afresh instead, in query
# slices that each hold the GIL under a millisecond (about 3x the CPU of an update that
# touches few rows, on the project thread, after a pause in typing: `Project.settle`).
CHANGED_RANGES_MAX_CHILDREN = 4_000


def _point(text: str, offset: int) -> tuple[int, Point]:
    """Byte offset and (row, byte column) of a code-point offset into `text`."""
    row = text.count("\n", 0, offset)
    line_start = text.rfind("\n", 0, offset) + 1
    column = len(text[line_start:offset].encode("utf-8"))
    return len(text[:offset].encode("utf-8")), Point(row, column)


def _full_lines(text: str, start: int, end: int) -> str:
    """The whole lines of `text` holding offsets start..end."""
    first = text.rfind("\n", 0, start) + 1
    last = text.find("\n", end)
    return text[first:len(text) if last < 0 else last]


@dataclass
class _Edit:
    start: Point
    start_row: int
    old_end_row: int
    new_end_row: int
    old_lines: str
    new_lines: str


def common_affixes(old: str, new: str) -> tuple[int, int]:
    """Lengths of the longest common prefix and (not overlapping it) suffix of two texts."""
    n = min(len(old), len(new))
    lo, hi = 0, n
    while lo < hi:  # binary search on slice equality: the comparisons run in C
        mid = (lo + hi + 1) // 2
        if old[:mid] == new[:mid]:
            lo = mid
        else:
            hi = mid - 1
    prefix, lo, hi = lo, 0, n - lo
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if old[len(old) - mid:] == new[len(new) - mid:]:
            lo = mid
        else:
            hi = mid - 1
    return prefix, lo


class ParsedDocument:
    def __init__(self, path: str, text: str, languages: Languages, parse: bool = True) -> None:
        """`parse=False` defers the first parse to the first use of the tree (a buffer too
        large to parse is never parsed)."""
        self.path = path
        self.text = text
        self.language = language_for_path(path)
        self.languages = languages
        self._parser = languages.parser(self.language) if self.language else None
        self.tree: Tree | None = None
        self._stale = self._parser is not None  # no tree yet: the next reparse makes one
        self._source: bytes | None = None
        if parse:
            self.reparse()
        self._chunk_terms: dict[str, dict[str, int]] = {}
        self._symbols: FileSymbols | None = None
        # Since the last symbol update: its text and tree (the tree edited along with the
        # document's), and the span the edits changed as (start, end in that text, end now).
        self._base: tuple[str, Tree] | None = None
        self._span: tuple[int, int, int] | None = None

    def edit(self, start: int, end: int, new_text: str, result: str | None = None) -> None:
        """Replace text[start:end] (code-point offsets) with `new_text`; reparsed lazily.
        `result`, when given, is the edited text already made (the editor's copy of the
        buffer, so that the two share one string)."""
        if not 0 <= start <= end <= len(self.text):
            raise ValueError(f"edit {start}..{end} is outside the document (0..{len(self.text)})")
        old = self.text
        if result is not None and len(result) != len(old) - (end - start) + len(new_text):
            raise ValueError("the edited text does not match the edit")
        self.text = result if result is not None else old[:start] + new_text + old[end:]
        self._source = None
        if self.tree is None:  # not parsed (yet, or too large): the next use parses it all
            self._symbols, self._base, self._span = None, None, None
            return
        start_byte, start_point = _point(old, start)
        old_end_byte, old_end_point = _point(old, end)
        new_end_byte, new_end_point = _point(self.text, start + len(new_text))
        for tree in (self.tree, self._base[1] if self._base is not None else None):
            if tree is not None:
                tree.edit(start_byte, old_end_byte, new_end_byte, start_point, old_end_point, new_end_point)
        self._span = merged_span(self._span, start, end, len(new_text))
        self._stale = True

    def set_text(self, text: str) -> None:
        """The whole new text, applied as one edit where it differs from the current one (so
        the tree is reparsed incrementally, as after an editor's edit)."""
        prefix, suffix = common_affixes(self.text, text)
        if prefix == len(self.text) == len(text):
            self.text = text  # the same text: keep one copy of it
            return
        self.edit(prefix, len(self.text) - suffix, text[prefix:len(text) - suffix], text)

    def replace(self, text: str) -> None:
        """A full-text change: parse from scratch."""
        self.text = text
        self._source = None
        self.tree = None
        self._stale = self._parser is not None
        self._symbols, self._base, self._span = None, None, None
        self.reparse()

    @property
    def source(self) -> bytes:
        """The text as UTF-8 (what the tree's byte offsets refer to)."""
        if self._source is None:
            self._source = self.text.encode("utf-8")
        return self._source

    def too_large(self, max_bytes: int, max_lines: int | None = None) -> str:
        """Why the buffer is too large to parse and index, or "" when it is not."""
        if max_lines is not None and (lines := self.text.count("\n") + 1) > max_lines:
            return f"{lines:,} lines exceed the {max_lines:,}-line limit"
        if len(self.text) > max_bytes:  # too large however it is encoded: do not encode it
            return f"{len(self.text):,} characters exceed the {max_bytes:,}-byte limit"
        size = len(self.text) if self.text.isascii() or len(self.text) * 4 <= max_bytes else len(self.source)
        return f"{size:,} bytes exceed the {max_bytes:,}-byte limit" if size > max_bytes else ""

    def drop_tree(self) -> None:
        """Forget the tree and symbols (a buffer grown too large); the next use parses afresh."""
        self.tree, self._symbols, self._source = None, None, None
        self._base, self._span = None, None
        self._stale = self._parser is not None

    def reparse(self) -> Tree | None:
        if self._stale and self._parser is not None:
            self.tree = parse(self._parser, self.source, self.tree)
            self._stale = False
        return self.tree

    @property
    def symbols_stale(self) -> bool:
        """Whether the text changed since the last `symbols()`."""
        return self._symbols is None or self._span is not None

    def symbols(self) -> FileSymbols:
        """The document's symbols, updated incrementally for the edits since the last call."""
        tree = self.reparse()
        previous, base, span = self._symbols, self._base, self._span
        if previous is not None and span is None:
            return previous
        if previous is not None and base is not None and span is not None and tree is not None \
                and tree.root_node.child_count <= CHANGED_RANGES_MAX_CHILDREN:
            result = self._incremental(previous, self._merged_edit(base[0], span), tree,
                                       base[1].changed_ranges(tree))
        else:
            result = extract(self.text, self.language, tree, self.languages, known=self._chunk_terms)
        lines = self.text.splitlines(keepends=True)
        self._chunk_terms = {"".join(lines[c.start_line:c.end_line + 1]): c.terms for c in result.chunks}
        self._symbols = result
        # a copy of the tree: later edits are applied to it too, for the next changed ranges
        self._base = (self.text, tree.copy()) if tree is not None else None
        self._span = None
        return result

    def _merged_edit(self, old: str, span: tuple[int, int, int]) -> _Edit:
        """The edits since the last update as one: `old` (that update's text) [start:old_end]
        became the current text [start:new_end]."""
        start, old_end, new_end = span
        start_point = _point(old, start)[1]
        return _Edit(start_point, start_point.row, old.count("\n", 0, old_end), self.text.count("\n", 0, new_end),
                     _full_lines(old, start, old_end), _full_lines(self.text, start, new_end))

    def _incremental(self, old: FileSymbols, e: _Edit, tree: Tree, changed: list) -> FileSymbols:
        delta = e.new_end_row - e.old_end_row
        rows = [(e.start_row, e.new_end_row), *((r.start_point.row, r.end_point.row) for r in changed)]
        lo, hi = min(r[0] for r in rows), max(r[1] for r in rows)
        kept = []
        for d in old.definitions:
            if d.end_line < e.start_row:
                moved = d
            elif d.start_line > e.old_end_row:
                moved = Definition(d.name, d.kind, d.start_line + delta, d.end_line + delta)
            else:
                continue  # touched by the edit: the query below finds it again if it still exists
            if moved.end_line < lo or moved.start_line > hi:
                kept.append(moved)
        definitions = unique_definitions(kept + definitions_of(tree, self.language, self.languages, (lo, hi)))
        references = Counter(old.references)
        references.subtract(i for i in IDENTIFIER.findall(e.old_lines) if len(i) > 1)
        references.update(i for i in IDENTIFIER.findall(e.new_lines) if len(i) > 1)
        lines = self.text.splitlines(keepends=True)
        chunks = chunk_lines(lines, definitions, self._chunk_terms)
        return FileSymbols(self.language, len(lines), definitions, {k: v for k, v in references.items() if v > 0},
                           chunks, self._imports(old, e, tree, lo, hi, delta))

    def _imports(self, old: FileSymbols, e: _Edit, tree: Tree, lo: int, hi: int, delta: int) -> list[dict]:
        beyond_edit = lo < e.start_row or hi > e.new_end_row
        touched = any(e.start_row <= imp.get("line", -1) <= e.old_end_row for imp in old.imports)
        mentions = _IMPORT_WORD.search(e.old_lines) or _IMPORT_WORD.search(e.new_lines)
        if beyond_edit or touched or mentions or self._inside_import(tree, e):
            return imports_of(tree, self.language, self.text.encode("utf-8"))
        return [replace_line(imp, delta) if imp.get("line", -1) > e.old_end_row else imp for imp in old.imports]

    def _inside_import(self, tree: Tree, e: _Edit) -> bool:
        """Whether the edited rows sit in (or form) an import: the smallest node covering them
        is the root, or it or an ancestor is an import-like node or a parse error (inside
        which the import extractor may still see one)."""
        first, last = e.new_lines.split("\n")[0], e.new_lines.split("\n")[-1]
        indent = len(first.encode("utf-8")) - len(first.lstrip().encode("utf-8"))
        end_column = len(last.rstrip().encode("utf-8"))
        node: Node | None = tree.root_node.named_descendant_for_point_range(
            Point(e.start_row, indent), Point(e.new_end_row, max(end_column, 0)))
        if node is None or node == tree.root_node or node.parent is None:
            return True
        at_edit = tree.root_node.named_descendant_for_point_range(e.start, e.start)
        return self._import_ancestor(node) or (at_edit is not None and self._import_ancestor(at_edit))

    def _import_ancestor(self, node: Node | None) -> bool:
        while node is not None:
            if any(word in node.type for word in _IMPORTISH):
                return True
            if node.type == "ERROR" and _IMPORT_WORD_BYTES.search(node.text or b""):
                return True  # the import extractor may still see an import inside a parse error
            if self.language in _JS_FAMILY and node.type == "call_expression":
                callee = node.child_by_field_name("function")
                if callee is not None and callee.text in (b"require", b"import"):
                    return True  # require("./x") and import("./x") are imports too
            node = node.parent
        return False


def merged_span(span: tuple[int, int, int] | None, start: int, end: int, new_length: int) -> tuple[int, int, int]:
    """The span changed by earlier edits (start, end in the text before them, end now; None:
    no edits yet) and one more edit (text[start:end] replaced by `new_length` characters, in
    the current text) as one span: the text before its start and after its end is as it was."""
    if span is None:
        return start, end, start + new_length
    first, old_end, now_end = span
    return (min(first, start), old_end + max(0, end - now_end),
            max(now_end, end) + new_length - (end - start))


def replace_line(imp: dict, delta: int) -> dict:
    return {**imp, "line": imp["line"] + delta}
