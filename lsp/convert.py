"""Conversions between LSP positions and text offsets, and to lsprotocol types.

LSP positions are 0-based lines and UTF-16 code units; Python strings index code points;
the CLI takes 1-based lines and columns counted in code points, as compilers print them.
All three meet here and nowhere else.
"""

from __future__ import annotations

import re

from lsprotocol import types

_EOL = re.compile(r"\r\n|\r|\n")


class PositionError(ValueError):
    """A position outside the document."""


def line_starts(text: str) -> list[int]:
    return [0] + [m.end() for m in _EOL.finditer(text)]


def _line_content(text: str, starts: list[int], line: int) -> str:
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    return _EOL.sub("", text[starts[line]:end])


def utf16_to_codepoints(line: str, units: int) -> int:
    """Code-point index of `units` UTF-16 units into `line` (clamped to the line end)."""
    count = 0
    for i, ch in enumerate(line):
        if count >= units:
            return i
        count += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def offset_at(text: str, position: types.Position) -> int:
    """Code-point offset of an LSP position. Lines past the end raise PositionError; a
    character past the end of its line means the line end, as the LSP specification says."""
    starts = line_starts(text)
    if position.line < 0 or position.line >= len(starts) or position.character < 0:
        raise PositionError(
            f"position {position.line}:{position.character} is outside the document "
            f"({len(starts)} lines)"
        )
    line = _line_content(text, starts, position.line)
    return starts[position.line] + utf16_to_codepoints(line, position.character)


def position_at(text: str, offset: int) -> types.Position:
    starts = line_starts(text)
    line = max(i for i, s in enumerate(starts) if s <= offset)
    prefix = text[starts[line]:offset]
    return types.Position(line=line, character=len(prefix.encode("utf-16-le")) // 2)


def offset_from_cli(text: str, line: int, column: int) -> int:
    """Offset of a 1-based line and 1-based code-point column (CLI convention)."""
    starts = line_starts(text)
    if line < 1 or line > len(starts) or column < 1:
        raise PositionError(f"{line}:{column} is outside the file ({len(starts)} lines)")
    content = _line_content(text, starts, line - 1)
    if column - 1 > len(content):
        raise PositionError(f"column {column} is past the end of line {line} ({len(content)} characters)")
    return starts[line - 1] + column - 1


def lsp_range(start: types.Position, end: types.Position | None = None) -> types.Range:
    return types.Range(start=start, end=end or start)
