"""Positions: every conversion between LSP positions, text offsets and the CLI's columns.

Three conventions meet here and nowhere else:
- LSP positions are 0-based lines and 0-based columns counted in the code units of the
  encoding negotiated at `initialize` (`general.positionEncodings`): UTF-8 bytes, UTF-16 code
  units (the default) or UTF-32 code points. Lines end at `\\n`, `\\r\\n` or `\\r` only (form feed,
  vertical tab, U+0085 and U+2028 are ordinary characters to LSP).
- Python strings, and so every offset inside loopls, index code points.
- The command line takes 1-based lines and 1-based columns counted in code points, as
  compilers print them.

Positions from clients are checked strictly: integers in 0..2^31-1 (not "7", 1.5, true or
Infinity), lines inside the document, and never a column that falls inside a character (the
middle of a UTF-16 surrogate pair or of a UTF-8 sequence). A column past the end of its line
means the line end, as the specification says.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

import cattrs
from lsprotocol import types
from pygls.protocol import default_converter
from pygls.workspace import TextDocument, Workspace

UTF8 = types.PositionEncodingKind.Utf8
UTF16 = types.PositionEncodingKind.Utf16
UTF32 = types.PositionEncodingKind.Utf32
MAX_UINTEGER = 2**31 - 1  # LSP's uinteger
_EOL = re.compile(r"\r\n|\r|\n")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class PositionError(ValueError):
    """A position outside the document, or one that splits a character."""


def _units(ch: str, encoding: str) -> int:
    code = ord(ch)
    if encoding == UTF16:
        return 2 if code > 0xFFFF else 1
    if encoding == UTF8:
        return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    return 1


def units_of(text: str, encoding: str = UTF16) -> int:
    """Length of `text` in the code units of `encoding`."""
    if encoding == UTF32 or text.isascii():
        return len(text)
    return sum(_units(ch, encoding) for ch in text)


def _column_to_codepoints(line: str, column: int, encoding: str, where: str) -> int:
    """Code-point index of `column` code units into `line` (which has no line break);
    past the end means the end; inside a character raises PositionError."""
    if encoding == UTF32 or line.isascii():
        return min(column, len(line))
    count = 0
    for i, ch in enumerate(line):
        if count == column:
            return i
        count += _units(ch, encoding)
        if count > column:
            raise PositionError(f"{where} falls inside the character {ch!r} ({encoding} units)")
    return len(line)


class LineIndex:
    """Where each line starts in one text, for repeated conversions on the same text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [m.end() for m in _EOL.finditer(text)]

    @property
    def line_count(self) -> int:
        return len(self.starts)

    def line_text(self, line: int) -> str:
        """Line `line` without its line break."""
        end = self.starts[line + 1] if line + 1 < len(self.starts) else len(self.text)
        return _EOL.sub("", self.text[self.starts[line]:end])

    def lines(self) -> list[str]:
        """All lines with their line breaks (the last may have none)."""
        bounds = self.starts + [len(self.text)]
        lines = [self.text[bounds[i]:bounds[i + 1]] for i in range(len(self.starts))]
        return lines if lines[-1] else lines[:-1]

    def offset(self, position: types.Position, encoding: str = UTF16) -> int:
        """Code-point offset of an LSP position. The position just after the last line
        (line == line count, character 0) is the end of the text, as some clients send it."""
        line, character = check_position(position)
        where = f"position {line}:{character}"
        if line == len(self.starts) and character == 0:
            return len(self.text)
        if line >= len(self.starts):
            raise PositionError(f"{where} is outside the document ({len(self.starts)} lines)")
        return self.starts[line] + _column_to_codepoints(self.line_text(line), character, encoding, where)

    def span(self, range_: types.Range, encoding: str = UTF16) -> tuple[int, int]:
        """Code-point offsets of an LSP range; an end before the start is an error."""
        start, end = self.offset(range_.start, encoding), self.offset(range_.end, encoding)
        if end < start:
            raise PositionError(
                f"range {range_.start.line}:{range_.start.character}-{range_.end.line}:{range_.end.character} "
                "ends before it starts")
        return start, end

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1

    def position(self, offset: int, encoding: str = UTF16) -> types.Position:
        """The LSP position of a code-point offset (clamped to the text)."""
        offset = max(0, min(offset, len(self.text)))
        line = self.line_of(offset)
        before = self.text[self.starts[line]:offset]
        if before.endswith("\r") and offset < len(self.text) and self.text[offset] == "\n":
            before = before[:-1]  # between \r and \n: the position is the line end
        return types.Position(line=line, character=units_of(before, encoding))

    def range(self, start: int, end: int, encoding: str = UTF16) -> types.Range:
        return types.Range(start=self.position(start, encoding), end=self.position(end, encoding))


def check_position(position: Any) -> tuple[int, int]:
    """(line, character) of a position whose fields are integers in LSP's range."""
    return _check_field("line", getattr(position, "line", None)), \
        _check_field("character", getattr(position, "character", None))


def _check_field(name: str, value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_UINTEGER:
        raise PositionError(f"position.{name} must be an integer from 0 to {MAX_UINTEGER}, not {value!r}"[:200])
    return value


def offset_at(text: str, position: types.Position, encoding: str = UTF16) -> int:
    return LineIndex(text).offset(position, encoding)


def position_at(text: str, offset: int, encoding: str = UTF16) -> types.Position:
    return LineIndex(text).position(offset, encoding)


def lsp_range(start: types.Position, end: types.Position | None = None) -> types.Range:
    return types.Range(start=start, end=end or start)


def offset_from_cli(text: str, line: int, column: int) -> int:
    """Offset of a 1-based line and 1-based code-point column (CLI convention)."""
    index = LineIndex(text)
    if line < 1 or line > index.line_count or column < 1:
        raise PositionError(f"{line}:{column} is outside the file ({index.line_count} lines)")
    content = index.line_text(line - 1)
    if column - 1 > len(content):
        raise PositionError(f"column {column} is past the end of line {line} ({len(content)} characters)")
    return index.starts[line - 1] + column - 1


def scrub_surrogates(text: str) -> str:
    """Lone surrogates (valid in JSON strings, not in UTF-8) as U+FFFD: one code point, one
    UTF-16 unit and three UTF-8 bytes for one, so every position stays where it was."""
    return _LONE_SURROGATE.sub("\ufffd", text) if not text.isascii() else text


# -- strict params -------------------------------------------------------------------------

def _structure_position(value: Any, _type: type) -> types.Position:
    if not isinstance(value, dict):
        raise PositionError(f"a position must be an object {{line, character}}, not {value!r}"[:200])
    return types.Position(line=_check_field("line", value.get("line")),
                          character=_check_field("character", value.get("character")))


def strict_converter() -> cattrs.Converter:
    """pygls' converter, with positions checked strictly wherever params hold one (cattrs
    would otherwise turn "7", 1.5 and true into integers and fail on Infinity)."""
    converter = default_converter()
    converter.register_structure_hook(types.Position, _structure_position)
    return converter


# -- the server's documents ----------------------------------------------------------------

class LspTextDocument(TextDocument):
    """pygls' document with LSP's line breaks and this module's strict conversions."""

    def __init__(self, *args: Any, encoding: str = UTF16, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._source is not None:
            self._source = scrub_surrogates(self._source)
        self.encoding = encoding
        self._index: LineIndex | None = None

    @property
    def line_index(self) -> LineIndex:
        source = self.source
        if self._index is None or self._index.text is not source:
            self._index = LineIndex(source)
        return self._index

    @property
    def lines(self) -> list[str]:
        return self.line_index.lines()

    def offset_at_position(self, client_position: types.Position) -> int:
        return self.line_index.offset(client_position, self.encoding)

    def client_position_at_offset(self, offset: int) -> types.Position:
        return self.line_index.position(offset, self.encoding)

    def _apply_incremental_change(self, change: types.TextDocumentContentChangePartial) -> None:
        start, end = self.line_index.span(change.range, self.encoding)
        source = self.source
        self._source = source[:start] + scrub_surrogates(change.text) + source[end:]

    def _apply_full_change(self, change: types.TextDocumentContentChangeEvent) -> None:
        self._source = scrub_surrogates(change.text)


class LspWorkspace(Workspace):
    """pygls' workspace whose documents are `LspTextDocument`s in the negotiated encoding."""

    def _create_text_document(self, doc_uri: str, source: str | None = None, version: int | None = None,
                              language_id: str | None = None) -> TextDocument:
        return LspTextDocument(doc_uri, source=source, version=version, language_id=language_id,
                               sync_kind=self._sync_kind, position_codec=self.position_codec,
                               encoding=self.position_encoding or UTF16)

    @classmethod
    def like(cls, other: Workspace, sync_kind: types.TextDocumentSyncKind) -> LspWorkspace:
        return cls(other.root_uri, sync_kind, list(other.folders.values()), other.position_encoding)
