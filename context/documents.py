"""Open documents parsed incrementally: each edit is applied to the tree (`tree.edit`) and
the next parse reuses the unchanged parts of the old tree."""

from __future__ import annotations

from tree_sitter import Point, Tree

from .languages import Languages, language_for_path
from .symbols import FileSymbols, extract


def _point(text: str, offset: int) -> tuple[int, Point]:
    """Byte offset and (row, byte column) of a code-point offset into `text`."""
    row = text.count("\n", 0, offset)
    line_start = text.rfind("\n", 0, offset) + 1
    column = len(text[line_start:offset].encode("utf-8"))
    return len(text[:offset].encode("utf-8")), Point(row, column)


class ParsedDocument:
    def __init__(self, path: str, text: str, languages: Languages) -> None:
        self.path = path
        self.text = text
        self.language = language_for_path(path)
        self.languages = languages
        self._parser = languages.parser(self.language) if self.language else None
        self.tree: Tree | None = self._parser.parse(text.encode("utf-8")) if self._parser else None
        self._stale = False
        self._chunk_terms: dict[str, dict[str, int]] = {}

    def edit(self, start: int, end: int, new_text: str) -> None:
        """Replace text[start:end] (code-point offsets) with `new_text`; reparsed lazily."""
        if not 0 <= start <= end <= len(self.text):
            raise ValueError(f"edit {start}..{end} is outside the document (0..{len(self.text)})")
        if self.tree is not None:
            start_byte, start_point = _point(self.text, start)
            old_end_byte, old_end_point = _point(self.text, end)
            self.text = self.text[:start] + new_text + self.text[end:]
            new_end_byte, new_end_point = _point(self.text, start + len(new_text))
            self.tree.edit(start_byte, old_end_byte, new_end_byte, start_point, old_end_point, new_end_point)
            self._stale = True
        else:
            self.text = self.text[:start] + new_text + self.text[end:]

    def replace(self, text: str) -> None:
        """A full-text change: parse from scratch."""
        self.text = text
        if self._parser is not None:
            self.tree = self._parser.parse(text.encode("utf-8"))
        self._stale = False

    def reparse(self) -> Tree | None:
        if self._stale and self._parser is not None:
            self.tree = self._parser.parse(self.text.encode("utf-8"), self.tree)
            self._stale = False
        return self.tree

    def symbols(self) -> FileSymbols:
        """The document's symbols; chunks whose text did not change keep their counted terms."""
        tree = self.reparse()
        result = extract(self.text, self.language, tree, self.languages, known=self._chunk_terms)
        lines = self.text.splitlines(keepends=True)
        self._chunk_terms = {"".join(lines[c.start_line:c.end_line + 1]): c.terms for c in result.chunks}
        return result
