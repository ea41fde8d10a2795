"""create-tiny -> load -> generate: the checkpoint round trip the foundation rests on."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
import torch

from loopls.engine.model.generate import GenerationError, generate
from loopls.engine.model.checkpoint import CheckpointError
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.tiny import create_tiny


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_create_tiny_is_deterministic(tmp_path: Path) -> None:
    a = create_tiny(tmp_path / "a")
    b = create_tiny(tmp_path / "b")
    c = create_tiny(tmp_path / "c", seed=1)
    assert _digest(a) == _digest(b)
    assert _digest(a)["model.safetensors"] != _digest(c)["model.safetensors"]
    names = set(_digest(a))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names


def test_checkpoint_has_fim_tokens_in_tokenizer_config(tmp_path: Path) -> None:
    folder = create_tiny(tmp_path / "m")
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    contents = {v["content"] for v in cfg["added_tokens_decoder"].values()}
    assert {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"} <= contents
    lm = load_checkpoint(folder)
    special = lm.tokenizer.special
    assert special.has_fim
    # the ids come from the file, not from constants in the code
    by_content = {v["content"]: int(k) for k, v in cfg["added_tokens_decoder"].items()}
    assert special.fim_prefix == by_content["<|fim_prefix|>"]
    assert special.fim_middle == by_content["<|fim_middle|>"]
    assert by_content["</s>"] in special.eos_ids


def test_greedy_generation_is_deterministic_across_loads(tmp_path: Path) -> None:
    params = SamplingParams(max_tokens=12, min_tokens=12)
    prompt = None
    outputs = []
    for name in ("x", "y"):
        lm = load_checkpoint(create_tiny(tmp_path / name))
        prompt = prompt or lm.tokenizer.encode("def add(a, b):\n    return ")
        outputs.append(generate(lm, prompt, params).token_ids)
    assert len(outputs[0]) == 12
    assert outputs[0] == outputs[1]


def test_seeded_sampling_repeats_and_differs_by_seed(tiny_lm) -> None:
    prompt = tiny_lm.tokenizer.encode("class Inventory:\n")
    run = lambda seed: generate(  # noqa: E731
        tiny_lm, prompt, SamplingParams(max_tokens=16, min_tokens=16, temperature=1.0, seed=seed)
    ).token_ids
    assert run(3) == run(3)
    assert run(3) != run(4)


def test_incremental_decode_matches_full_forward(tiny_lm) -> None:
    from loopls.engine.model.cache import KVCache

    cfg = tiny_lm.config
    n = 3 * cfg.loop_window_size + 5  # well past the Loop window
    ids = torch.randint(0, cfg.vocab_size, (1, n), generator=torch.Generator().manual_seed(0))
    full = tiny_lm.model(ids, KVCache(cfg, 1, n, torch.float32))
    cache = KVCache(cfg, 1, n, torch.float32)
    steps = [tiny_lm.model(ids[:, :7], cache)] + [tiny_lm.model(ids[:, i : i + 1], cache) for i in range(7, n)]
    assert torch.allclose(full, torch.cat(steps, dim=1), atol=1e-4)


def test_stop_string_and_max_tokens(tiny_lm) -> None:
    prompt = tiny_lm.tokenizer.encode("import os\n")
    free = generate(tiny_lm, prompt, SamplingParams(max_tokens=8, min_tokens=8))
    assert free.finish_reason == "length" and len(free.token_ids) == 8
    assert free.text, "the tiny model should produce some text"
    stop = free.text[len(free.text) // 2 :][:1]
    cut = generate(tiny_lm, prompt, SamplingParams(max_tokens=8, min_tokens=8, stop=(stop,)))
    assert cut.finish_reason == "stop"
    assert stop not in cut.text
    assert free.text.startswith(cut.text)


def test_streaming_pieces_add_up_to_the_text(tiny_lm) -> None:
    pieces: list[str] = []
    gen = generate(tiny_lm, tiny_lm.tokenizer.encode("x = "), SamplingParams(max_tokens=10, min_tokens=10),
                   on_text=pieces.append)
    assert "".join(pieces) == gen.text


def test_cancel_stops_generation(tiny_lm) -> None:
    cancel = threading.Event()
    count = 0

    def on_text(_: str) -> None:
        nonlocal count
        count += 1
        cancel.set()

    gen = generate(tiny_lm, tiny_lm.tokenizer.encode("y = "), SamplingParams(max_tokens=500, min_tokens=500),
                   cancel=cancel, on_text=on_text)
    assert gen.finish_reason == "cancelled"
    assert count >= 1
    assert len(gen.token_ids) < 50  # stopped long before max_tokens


def test_empty_and_overlong_prompts_are_refused(tiny_lm) -> None:
    with pytest.raises(GenerationError, match="empty prompt"):
        generate(tiny_lm, [], SamplingParams())
    too_long = [5] * tiny_lm.config.max_position_embeddings
    with pytest.raises(GenerationError, match="does not fit"):
        generate(tiny_lm, too_long, SamplingParams())


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no-config", "missing config.json"),
        ("no-weights", "no *.safetensors"),
        ("no-tokenizer", "no tokenizer.json or tokenizer.model"),
        ("bad-type", "unknown model_type 'gpt9'"),
    ],
)
def test_bad_checkpoint_gives_one_line_error_naming_path(tmp_path: Path, breakage: str, message: str) -> None:
    folder = create_tiny(tmp_path / "m")
    if breakage == "no-config":
        (folder / "config.json").unlink()
    elif breakage == "no-weights":
        (folder / "model.safetensors").unlink()
    elif breakage == "no-tokenizer":
        (folder / "tokenizer.json").unlink()
    else:
        cfg = json.loads((folder / "config.json").read_text())
        cfg["model_type"] = "gpt9"
        (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    text = str(info.value)
    assert "\n" not in text
    assert str(folder) in text
    assert message in text


def test_missing_folder_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        load_checkpoint(tmp_path / "nope")
