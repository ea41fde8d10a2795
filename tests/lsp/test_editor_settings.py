"""Every server option is documented in the README (the editors' settings are checked against
the options in tests/editors/test_settings_agree.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from loopls.lsp.options import Options, options_to_json

ROOT = Path(__file__).resolve().parents[2]


def _flatten(prefix: str, value) -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(f"{prefix}.{k}" if prefix else k, v))
        return out
    return {prefix: value}


def test_every_option_is_documented_in_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for key in _flatten("", options_to_json(Options())):
        assert f"`{key}`" in readme, key
    assert dataclasses.is_dataclass(Options)
