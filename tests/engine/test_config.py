"""config.json validation: every size sane, every error naming the key and the file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from loopls.engine.model.config import ConfigError, ModelConfig
from loopls.engine.model.checkpoint import CheckpointError
from loopls.engine.model.loader import load_checkpoint

BASE = {
    "model_type": "iquestloopcoder", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "loop_num": 2,
    "loop_window_size": 16, "eos_token_id": [2], "bos_token_id": 1,
}


def write(tmp_path: Path, change: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(BASE | change))  # NaN is written as NaN, as Python's json does
    return path


def test_the_base_config_is_valid(tmp_path: Path) -> None:
    config = ModelConfig.from_file(write(tmp_path, {}))
    assert config.num_hidden_layers == 2 and config.loop_window_size == 16


@pytest.mark.parametrize(("change", "fragment"), [
    ({"num_attention_heads": -4}, "num_attention_heads must be a positive integer, not -4"),
    ({"num_hidden_layers": 1e7}, "num_hidden_layers must be an integer from 1 to 1024, not 10000000"),
    ({"num_hidden_layers": 2.5}, "num_hidden_layers must be an integer, not 2.5"),
    ({"hidden_size": "64"}, "hidden_size must be an integer, not '64'"),
    ({"vocab_size": 0}, "vocab_size must be an integer from 1"),
    ({"vocab_size": -3}, "vocab_size must be an integer from 1"),
    ({"intermediate_size": True}, "intermediate_size must be an integer, not True"),
    ({"num_key_value_heads": 3}, "num_attention_heads (4) is not a multiple of num_key_value_heads (3)"),
    ({"num_key_value_heads": 0}, "num_key_value_heads must be an integer from 1"),
    ({"head_dim": 15}, "head_dim 15 must be even"),
    ({"head_dim": 4096}, "head_dim must be an integer from 2 to 1024"),
    ({"rms_norm_eps": math.nan}, "rms_norm_eps must be a finite number between 0 and 1, not nan"),
    ({"rms_norm_eps": 0}, "rms_norm_eps must be a finite number between 0 and 1"),
    ({"rms_norm_eps": -1e-5}, "rms_norm_eps must be a finite number"),
    ({"rope_theta": math.inf}, "rope_theta must be a positive finite number"),
    ({"max_position_embeddings": 32}, "max_position_embeddings must be an integer from 64 to 16777216, not 32"),
    ({"max_position_embeddings": 10**12}, "max_position_embeddings must be an integer from 64"),
    ({"loop_num": 0}, "loop_num must be an integer from 1 to 16, not 0"),
    ({"loop_num": 1000}, "loop_num must be an integer from 1 to 16"),
    ({"loop_window_size": 0}, "loop_window_size must be from 1 to max_position_embeddings (4096), not 0"),
    ({"loop_window_size": 10**6}, "loop_window_size must be from 1 to max_position_embeddings"),
    ({"eos_token_id": [2, 99999]}, "eos_token_id 99999 is not a token id of the vocabulary (0 to 511)"),
    ({"eos_token_id": ["x"]}, "eos_token_id must be an integer, not 'x'"),
    ({"bos_token_id": -1}, "bos_token_id -1 is not a token id"),
    ({"model_type": 5}, "model_type must be a string, not 5"),
    ({"layer_types": 5}, "layer_types must be a list, not 5"),
    ({"layer_types": [{"x": 1}]}, "are not supported"),
])
def test_invalid_configs_name_the_key_and_the_file(tmp_path: Path, change: dict, fragment: str) -> None:
    path = write(tmp_path, change)
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_file(path)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{path}: ")


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({k: v for k, v in BASE.items() if k != "vocab_size"}))
    with pytest.raises(ConfigError, match="lacks required key 'vocab_size'"):
        ModelConfig.from_file(path)


def test_a_non_loop_model_ignores_loop_fields_it_does_not_have(tmp_path: Path) -> None:
    config = ModelConfig.from_file(write(tmp_path, {"model_type": "llama", "loop_window_size": 0, "loop_num": 1}))
    assert not config.is_loop


def test_the_loader_reports_a_config_error_once_with_the_path(tmp_path: Path, tiny_checkpoint: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "m"))
    config = folder / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"max_position_embeddings": 32}))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    message = str(info.value)
    assert message.count(str(config)) == 1 and "max_position_embeddings" in message
