"""Positions in every negotiated encoding, LSP's line breaks, strict params, and the
server's document model applying incremental edits on non-ASCII lines."""

from __future__ import annotations

import cattrs
import pytest
from lsprotocol import types

from loopls.lsp.positions import (UTF8, UTF16, UTF32, LineIndex, LspTextDocument, PositionError, offset_at,
                                  position_at, strict_converter, units_of)

# é: 1 code point, 1 UTF-16 unit, 2 UTF-8 bytes; 中: 1/1/3; 😀: 1 code point, 2 UTF-16 units, 4 bytes
LINE = "s = 'é中😀x'"
X = LINE.index("x")
UNITS = {UTF8: len(LINE[:X].encode("utf-8")), UTF16: len(LINE[:X].encode("utf-16-le")) // 2, UTF32: X}


@pytest.mark.parametrize("encoding", [UTF8, UTF16, UTF32])
def test_positions_round_trip_in_each_encoding(encoding) -> None:
    text = "first\n" + LINE + "\nlast\n"
    offset = text.index("x")
    pos = types.Position(line=1, character=UNITS[encoding])
    assert offset_at(text, pos, encoding) == offset
    assert position_at(text, offset, encoding) == pos
    assert units_of(LINE[:X], encoding) == UNITS[encoding]
    for i in range(len(LINE) + 1):  # every code-point boundary of the line maps back to itself
        p = position_at(text, 6 + i, encoding)
        assert offset_at(text, p, encoding) == 6 + i


@pytest.mark.parametrize(("encoding", "inside"), [
    (UTF16, len("s = 'é中") + 1),  # between the two halves of the emoji's surrogate pair
    (UTF8, len("s = '".encode()) + 1),  # inside é's two bytes
    (UTF8, len("s = 'é".encode()) + 2),  # inside 中's three bytes
])
def test_a_position_inside_a_character_is_refused(encoding, inside) -> None:
    with pytest.raises(PositionError, match="inside the character"):
        offset_at(LINE, types.Position(line=0, character=inside), encoding)


def test_lines_split_only_at_lsp_line_breaks() -> None:
    text = "a\fb\vc\x85d\u2028e\u2029f\r\ng\rh\ni"
    index = LineIndex(text)
    assert index.line_count == 4
    assert index.line_text(0) == "a\fb\vc\x85d\u2028e\u2029f"
    assert offset_at(text, types.Position(line=1, character=0)) == text.index("g")
    assert offset_at(text, types.Position(line=3, character=1)) == len(text)
    assert index.lines() == ["a\fb\vc\x85d\u2028e\u2029f\r\n", "g\r", "h\n", "i"]


def test_character_past_line_end_clamps_and_line_past_end_raises() -> None:
    text = "a = '😀x'\r\nb = 2\rc\n"
    assert offset_at(text, types.Position(line=1, character=99)) == text.index("\rc")
    assert offset_at(text, types.Position(line=3, character=0)) == len(text)
    assert offset_at(text, types.Position(line=4, character=0)) == len(text)  # just past the last line
    with pytest.raises(PositionError, match="outside the document"):
        offset_at(text, types.Position(line=5, character=0))
    with pytest.raises(PositionError, match="ends before it starts"):
        LineIndex(text).span(types.Range(start=types.Position(line=1, character=2),
                                         end=types.Position(line=1, character=0)))


@pytest.mark.parametrize("bad", ["7", 1.5, True, float("inf"), float("nan"), -1, 2**31, None])
def test_params_with_non_integer_or_out_of_range_positions_are_refused(bad) -> None:
    converter = strict_converter()
    params = {"textDocument": {"uri": "file:///x.py"}, "position": {"line": bad, "character": 0},
              "context": {"triggerKind": 1}}
    with pytest.raises(cattrs.BaseValidationError) as info:
        converter.structure(params, types.InlineCompletionParams)
    assert "position.line must be an integer" in repr(info.value.exceptions)
    params["position"] = {"line": 0, "character": 0}
    assert converter.structure(params, types.InlineCompletionParams).position.line == 0


@pytest.mark.parametrize("encoding", [UTF8, UTF16, UTF32])
def test_document_applies_incremental_edits_on_non_ascii_lines(encoding) -> None:
    text = "a\f= 1\nname = 'é中😀'\nend\n"
    doc = LspTextDocument("file:///x.py", text, version=1, encoding=encoding)
    line = "name = 'é中😀'"
    after_emoji = units_of(line[:line.index("'", 8)], encoding)
    doc.apply_change(types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(line=1, character=after_emoji),
                          end=types.Position(line=1, character=after_emoji)), text="!"))
    assert doc.source == "a\f= 1\nname = 'é中😀!'\nend\n"
    # a form feed is not a line break: line 1 is still the `name` line
    doc.apply_change(types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(line=1, character=0), end=types.Position(line=1, character=4)),
        text="word"))
    assert doc.source == "a\f= 1\nword = 'é中😀!'\nend\n"
    assert doc.lines == ["a\f= 1\n", "word = 'é中😀!'\n", "end\n"]


def test_lone_surrogates_become_replacement_characters_without_moving_positions() -> None:
    doc = LspTextDocument("file:///x.py", "a\ud800b\n", version=1, encoding=UTF16)
    assert doc.source == "a\ufffdb\n"
    assert doc.offset_at_position(types.Position(line=0, character=2)) == 2
