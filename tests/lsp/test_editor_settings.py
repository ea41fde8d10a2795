"""VS Code settings and server options are declared once: their keys must agree."""

from __future__ import annotations

import dataclasses
import json
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


def test_vscode_settings_match_server_options() -> None:
    package = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text(encoding="utf-8"))
    props = package["contributes"]["configuration"]["properties"]
    declared = {k.removeprefix("loopls."): v["default"] for k, v in props.items() if not k.startswith("loopls.server.")}
    assert declared == _flatten("", options_to_json(Options()))
    for key, prop in props.items():
        assert prop.get("description"), f"{key} has no description"


def test_every_option_is_documented_in_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for key in _flatten("", options_to_json(Options())):
        assert f"`{key}`" in readme, key
    assert dataclasses.is_dataclass(Options)
