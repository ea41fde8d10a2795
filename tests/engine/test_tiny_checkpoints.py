"""create-tiny writes checkpoints that transformers and vLLM load like the published IQuest
ones: configuration code named in config.json's auto_map, and a size vLLM's CPU attention runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.tiny import create_tiny

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("arch, config_class", [
    ("iquestloopcoder", "IQuestLoopCoderConfig"),
    ("iquestcoder", "IQuestCoderConfig"),
])
def test_iquest_checkpoints_ship_their_configuration_code(tmp_path, arch: str, config_class: str) -> None:
    folder = create_tiny(tmp_path / arch, arch=arch, size="small")
    raw = json.loads((folder / "config.json").read_text())
    module = f"configuration_{arch}"
    assert raw["auto_map"] == {"AutoConfig": f"{module}.{config_class}"}
    assert (folder / f"{module}.py").is_file()
    config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=True)
    assert type(config).__name__ == config_class and config.model_type == arch
    assert (config.head_dim, config.num_hidden_layers, config.hidden_act) == (64, 3, "silu")
    assert config.eos_token_id == raw["eos_token_id"]
    if arch == "iquestloopcoder":
        assert (config.loop_num, config.loop_window_size) == (2, 16)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_known_architectures_need_no_code(tmp_path, arch: str) -> None:
    folder = create_tiny(tmp_path / arch, arch=arch)
    assert "auto_map" not in json.loads((folder / "config.json").read_text())
    assert not list(folder.glob("*.py"))
    assert transformers.AutoConfig.from_pretrained(folder).model_type == arch


def test_sizes(tmp_path) -> None:
    small = load_checkpoint(create_tiny(tmp_path / "small", size="small"))
    tiny = load_checkpoint(create_tiny(tmp_path / "tiny"))
    assert (small.config.head_dim, small.config.hidden_size, small.config.num_hidden_layers) == (64, 256, 3)
    assert (tiny.config.head_dim, tiny.config.hidden_size, tiny.config.num_hidden_layers) == (16, 64, 2)
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        create_tiny(tmp_path / "huge", size="huge")


def test_cli_size_option(tmp_path) -> None:
    run = [sys.executable, "-m", "loopls.lsp", "model", "create-tiny"]
    done = subprocess.run([*run, str(tmp_path / "c"), "--arch", "iquestcoder", "--size", "small"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "small iquestcoder" in done.stdout
    assert json.loads((tmp_path / "c" / "config.json").read_text())["head_dim"] == 64
    bad = subprocess.run([*run, str(tmp_path / "d"), "--size", "huge"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
