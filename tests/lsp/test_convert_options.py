"""Option parsing (and the CLI's 1-based positions; LSP positions: test_positions.py)."""

from __future__ import annotations

import pytest
from lsprotocol import types

from loopls.lsp.positions import PositionError, offset_from_cli
from loopls.lsp.options import Options, merge_options, options_to_json, parse_options

TEXT = "a = '😀x'\r\nb = 2\rc\n"


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
        ({"completion": {"fimLayout": "mps"}}, "fimLayout must be auto, psm or spm"),
    ],
)
def test_invalid_options_fall_back_to_defaults_with_a_warning(raw, fragment: str) -> None:
    options, warning = parse_options(raw)
    assert options == Options()
    assert warning and fragment in warning


def test_the_fim_layout_option_names_the_packers_layout() -> None:
    assert Options().completion.layout is None  # auto: the checkpoint's own
    options, warning = parse_options({"completion": {"fimLayout": "spm"}})
    assert warning is None and options.completion.layout == "spm"


def test_a_partial_section_merges_into_the_current_options() -> None:
    current, _ = parse_options({"model": {"name": "/models/x"}, "completion": {"maxTokens": 12}})
    merged, warning = merge_options({"completion": {"temperature": 0.2}}, current)
    assert warning is None
    assert merged.model.name == "/models/x" and merged.completion.max_tokens == 12
    assert merged.completion.temperature == 0.2


def test_an_invalid_value_falls_back_to_that_keys_default_with_one_warning() -> None:
    current, _ = parse_options({"completion": {"maxTokens": 12, "maxLines": 3}})
    merged, warning = merge_options({"completion": {"maxTokens": 0, "maxTokenz": 5}, "model": {"device": "tpu"}}, current)
    assert merged.completion.max_tokens == Options().completion.max_tokens  # the key's default
    assert merged.completion.max_lines == 3  # untouched
    assert merged.model.device == "auto"
    assert warning.count("invalid loopls options") == 1
    for fragment in ("completion.maxTokens", "maxTokenz", "model.device", "tpu"):
        assert fragment in warning


def test_null_means_default_and_a_non_object_changes_nothing() -> None:
    current, _ = parse_options({"completion": {"maxTokens": 12}})
    merged, warning = merge_options({"completion": {"maxTokens": None}}, current)
    assert merged.completion.max_tokens == 48 and warning is None
    same, warning = merge_options("fast", current)
    assert same == current and "must be an object" in warning
    same, warning = merge_options({"completion": "fast"}, current)
    assert same.completion == Options().completion and "completion must be an object" in warning


def test_keys_valid_only_together_merge_together() -> None:
    """model.backend "openai" needs model.url: a section naming both is accepted as a whole,
    and switching back to native keeps the url harmlessly."""
    merged, warning = merge_options({"model": {"backend": "openai", "url": "http://127.0.0.1:8000/v1"}}, Options())
    assert warning is None and (merged.model.backend, merged.model.url) == ("openai", "http://127.0.0.1:8000/v1")
    alone, warning = merge_options({"model": {"backend": "openai"}}, Options())
    assert alone.model.backend == "native" and "model.url must be an http(s) URL" in warning
