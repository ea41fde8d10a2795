"""Position conversions (UTF-16 vs code points vs 1-based CLI) and option parsing."""

from __future__ import annotations

import pytest
from lsprotocol import types

from loopls.lsp.convert import PositionError, offset_at, offset_from_cli, position_at
from loopls.lsp.options import Options, options_to_json, parse_options

TEXT = "a = '😀x'\r\nb = 2\rc\n"


def test_utf16_positions_map_to_code_points() -> None:
    # the emoji is two UTF-16 units and one code point
    x = TEXT.index("x")
    assert offset_at(TEXT, types.Position(line=0, character=7)) == x
    assert position_at(TEXT, x) == types.Position(line=0, character=7)


def test_all_three_line_endings_count() -> None:
    assert offset_at(TEXT, types.Position(line=1, character=0)) == TEXT.index("b")
    assert offset_at(TEXT, types.Position(line=2, character=0)) == TEXT.index("c")
    assert offset_at(TEXT, types.Position(line=3, character=0)) == len(TEXT)


def test_character_past_line_end_clamps_but_line_past_end_raises() -> None:
    assert offset_at(TEXT, types.Position(line=1, character=99)) == TEXT.index("\rc")
    with pytest.raises(PositionError):
        offset_at(TEXT, types.Position(line=4, character=0))


def test_cli_positions_are_one_based_code_points() -> None:
    assert offset_from_cli(TEXT, 1, 1) == 0
    assert offset_from_cli(TEXT, 1, 7) == TEXT.index("x")
    with pytest.raises(PositionError):
        offset_from_cli(TEXT, 0, 1)
    with pytest.raises(PositionError):
        offset_from_cli(TEXT, 2, 8)


def test_options_parse_camel_case_and_round_trip() -> None:
    raw = {"model": {"name": "/models/x", "device": "cpu"}, "completion": {"maxTokens": 12, "contextTokens": 4096}}
    options, warning = parse_options(raw)
    assert warning is None
    assert options.model.name == "/models/x" and options.completion.max_tokens == 12
    assert parse_options(options_to_json(options)) == (options, None)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"completion": {"maxTokenz": 3}}, "maxTokenz"),
        ({"completion": {"maxTokens": 0}}, "maxTokens must be between"),
        ({"model": {"device": "tpu"}}, "model.device"),
        ({"completion": "fast"}, "completion"),
    ],
)
def test_invalid_options_fall_back_to_defaults_with_a_warning(raw, fragment: str) -> None:
    options, warning = parse_options(raw)
    assert options == Options()
    assert warning and fragment in warning
