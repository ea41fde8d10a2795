"""Property-based fuzzing of document edits, with a fixed budget (derandomized, bounded
examples): random incremental edits (line breaks of every kind, surrogate pairs, edits that
split a \\r\\n or join a \\r with a \\n) applied to the server's document, in every position
encoding, must leave

- the text equal to the same edits applied to a plain string;
- the line index kept up to date edit by edit equal to one built from the text afresh;
- the edits the document hands the project model, replayed on the project's own copy, equal
  to the text (and sharing its string).
"""

from __future__ import annotations

from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types

from loopls.context.documents import ParsedDocument
from loopls.context.languages import Languages
from loopls.lsp import positions
from loopls.lsp.positions import (UTF8, UTF16, UTF32, LineIndex, LspTextDocument, PositionError, line_starts,
                                    offset_from_cli)

FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=150,
                suppress_health_check=[HealthCheck.too_slow])
PIECES = st.sampled_from(["a", "bc", " ", "\n", "\r", "\r\n", "\n\r", "\x0c", "\u2028", "é", "😀", "def f():\n"])
TEXT = st.lists(PIECES, max_size=30).map("".join)


def reference_starts(text: str) -> list[int]:
    """Line starts as LSP defines them, the slow obvious way."""
    starts, i = [0], 0
    while i < len(text):
        if text[i] == "\r" and i + 1 < len(text) and text[i + 1] == "\n":
            i += 1
        if text[i] in "\r\n":
            starts.append(i + 1)
        i += 1
    return starts


@FUZZ
@given(TEXT, st.integers(1, 8))
def test_line_starts_split_where_lsp_does(text: str, chunk: int) -> None:
    assert line_starts(text).tolist() == reference_starts(text)
    with patch.object(positions, "_CHUNK", chunk):  # a \r\n across the scan's chunks
        assert line_starts(text).tolist() == reference_starts(text)


@FUZZ
@given(TEXT, st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), TEXT), min_size=1, max_size=12),
       st.sampled_from([UTF8, UTF16, UTF32]))
def test_incremental_edits_match_a_fresh_document(text: str, edits, encoding: str) -> None:
    doc = LspTextDocument("file:///t.py", source=text, version=1, encoding=encoding)
    project_doc = ParsedDocument("t.py", doc.source, Languages(), parse=True)
    expected = text
    for a, b, new in edits:
        index = doc.line_index
        start, end = sorted((int(a * len(expected)), int(b * len(expected))))
        rng = index.range(start, end, encoding)
        start, end = index.span(rng, encoding)  # a position never falls inside a character
        doc.apply_change(types.TextDocumentContentChangePartial(range=rng, text=new))
        expected = expected[:start] + new + expected[end:]
        assert doc.source == expected
        assert doc.line_index.starts.tolist() == reference_starts(expected)
        assert doc.line_index.starts.tolist() == LineIndex(expected).starts.tolist()
        replay = doc.take_edits()
        for i, (s, e, t) in enumerate(replay):
            project_doc.edit(s, e, t, doc.source if i == len(replay) - 1 else None)
        assert project_doc.text is doc.source
    # the project's incrementally reparsed symbols equal a cold parse of the same text
    cold = ParsedDocument("t.py", expected, Languages(), parse=True)
    assert project_doc.symbols() == cold.symbols()


def test_pending_edits_stay_bounded_when_nobody_takes_them() -> None:
    doc = LspTextDocument("untitled:1", source="", version=1)
    for i in range(500):
        rng = doc.line_index.range(len(doc.source), len(doc.source))
        doc.apply_change(types.TextDocumentContentChangePartial(range=rng, text=f"{i}\n"))
    edits = doc.take_edits()
    assert len(edits) <= 65
    text = ""
    for start, end, new in edits:
        text = new if start is None else text[:start] + new + text[end:]
    assert text == doc.source


@FUZZ
@given(TEXT, st.integers(-1, 12), st.integers(-1, 6), st.integers(1, 8))
def test_cli_positions_agree_with_the_line_index(text: str, line: int, column: int, chunk: int) -> None:
    index = LineIndex(text)
    if 1 <= line <= index.line_count and 1 <= column <= len(index.line_text(line - 1)) + 1:
        expected: int | str = index.line_start(line - 1) + column - 1
    else:
        expected = "error"
    with patch.object(positions, "_CHUNK", chunk):
        try:
            got: int | str = offset_from_cli(text, line, column)
        except PositionError:
            got = "error"
    assert got == expected
