"""Sampling (greedy, temperature, top-k, top-p, seed) and the stop rules of generation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from loopls.engine.model.generate import GenerationError, generate
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.sampler import sample, sample_rows
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.tiny import create_tiny


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return create_tiny(tmp_path_factory.mktemp("gen") / "m", arch="iquestloopcoder", seed=1,
                       overrides={"max_position_embeddings": 64, "loop_window_size": 4})


@pytest.fixture(scope="module")
def lm(folder: Path):
    return load_checkpoint(folder)


def _draws(logits: list[float], params: SamplingParams, n: int = 400) -> set[int]:
    gen = torch.Generator().manual_seed(0)
    batch = torch.tensor([logits]).repeat(n, 1)
    return set(sample(batch, params, gen).tolist())


def test_greedy_takes_the_argmax() -> None:
    assert _draws([0.1, 3.0, 2.9, -1.0], SamplingParams()) == {1}


def test_temperature_sampling_reaches_every_token() -> None:
    assert _draws([1.0, 1.2, 0.8, 1.1], SamplingParams(temperature=1.0)) == {0, 1, 2, 3}


def test_top_k_keeps_the_k_best() -> None:
    assert _draws([1.0, 1.2, 0.8, 1.1, 0.9], SamplingParams(temperature=1.0, top_k=2)) == {1, 3}
    assert _draws([1.0, 1.2, 0.8, 1.1], SamplingParams(temperature=5.0, top_k=1)) == {1}


def test_top_p_keeps_the_smallest_nucleus() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().tolist()
    assert _draws(logits, SamplingParams(temperature=1.0, top_p=0.7)) == {0, 1}
    assert _draws(logits, SamplingParams(temperature=1.0, top_p=0.85)) == {0, 1, 2}
    assert _draws(logits, SamplingParams(temperature=1.0, top_p=0.2)) == {0}


def test_one_batch_samples_every_row_with_its_own_parameters() -> None:
    """The serving engine samples a whole step at once: greedy, top-k, top-p and seeded rows
    side by side, each as if it were alone."""
    logits = torch.tensor([[1.0, 1.2, 0.8, 1.1, 0.9]]).repeat(600, 1)
    params = [SamplingParams(), SamplingParams(temperature=1.0, top_k=2),
              SamplingParams(temperature=1.0, top_p=0.3), SamplingParams(temperature=1.0)] * 150
    out = sample_rows(logits, params, [None] * 600).view(150, 4)
    assert set(out[:, 0].tolist()) == {1}
    assert set(out[:, 1].tolist()) == {1, 3}
    assert set(out[:, 2].tolist()) <= {1, 3} and len(set(out[:, 2].tolist())) == 2
    assert set(out[:, 3].tolist()) == {0, 1, 2, 3, 4}
    seeded = SamplingParams(temperature=1.0, seed=3)
    alone = [int(sample_rows(logits[:1], [seeded], [torch.Generator().manual_seed(3)])) for _ in range(2)]
    gen = torch.Generator().manual_seed(3)
    beside = sample_rows(logits[:3], [params[3], seeded, params[1]], [None, gen, None])
    assert alone[0] == alone[1] == int(beside[1])


def test_invalid_sampling_parameters_are_refused() -> None:
    for bad in ({"max_tokens": -1}, {"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -2}):
        with pytest.raises(ValueError):
            SamplingParams(**bad)


def test_seed_repeats_and_differs(lm) -> None:
    prompt = lm.tokenizer.encode("def f(x):\n")
    run = lambda seed, **kw: generate(lm, prompt, SamplingParams(  # noqa: E731
        max_tokens=16, min_tokens=16, temperature=1.0, seed=seed, **kw)).token_ids
    assert run(1) == run(1)
    assert run(1) != run(2)
    greedy = generate(lm, prompt, SamplingParams(max_tokens=16, min_tokens=16)).token_ids
    assert run(1, top_k=1) == greedy


def test_max_tokens(lm) -> None:
    gen = generate(lm, lm.tokenizer.encode("x = "), SamplingParams(max_tokens=5, min_tokens=5))
    assert gen.finish_reason == "length" and len(gen.token_ids) == 5
    assert gen.prompt_tokens == len(lm.tokenizer.encode("x = "))


def test_stop_token_ids_and_min_tokens(lm) -> None:
    prompt = lm.tokenizer.encode("import os\n")
    free = generate(lm, prompt, SamplingParams(max_tokens=6, min_tokens=6)).token_ids
    stopped = generate(lm, prompt, SamplingParams(max_tokens=6, stop_token_ids=(free[0],)))
    assert stopped.finish_reason == "stop" and stopped.token_ids == []
    held = generate(lm, prompt, SamplingParams(max_tokens=6, min_tokens=2, stop_token_ids=(free[0],)))
    assert held.token_ids and held.token_ids[0] != free[0]


def test_eos_ids_come_from_generation_config(folder: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(folder, tmp_path / "eos"))
    lm = load_checkpoint(copy)
    prompt = lm.tokenizer.encode("import os\n")
    free = generate(lm, prompt, SamplingParams(max_tokens=6, min_tokens=6)).token_ids
    (copy / "generation_config.json").write_text(json.dumps({"eos_token_id": [free[2]]}))
    eos_lm = load_checkpoint(copy)
    assert free[2] in eos_lm.tokenizer.special.eos_ids
    gen = generate(eos_lm, prompt, SamplingParams(max_tokens=6))
    assert gen.finish_reason == "stop" and gen.token_ids == free[:2]


def test_stop_string_across_tokens_is_never_streamed(lm) -> None:
    prompt = lm.tokenizer.encode("class A:\n")
    free = generate(lm, prompt, SamplingParams(max_tokens=20, min_tokens=20))
    texts = [lm.tokenizer.decode_continuation(prompt[-1], free.token_ids[: i + 1]) for i in range(20)]
    # a stop string made of the last character of one token and the first of the next
    i = next(i for i in range(1, 19) if len(texts[i]) > len(texts[i - 1]) and len(texts[i + 1]) > len(texts[i]))
    stop = texts[i][-1] + texts[i + 1][len(texts[i])]
    pieces: list[str] = []
    gen = generate(lm, prompt, SamplingParams(max_tokens=20, min_tokens=20, stop=(stop,)), on_text=pieces.append)
    assert gen.finish_reason == "stop"
    assert gen.text == free.text[: free.text.find(stop)]
    assert "".join(pieces) == gen.text


def test_streaming_adds_up_and_arrives_before_the_end(lm) -> None:
    pieces: list[str] = []
    gen = generate(lm, lm.tokenizer.encode("y = "), SamplingParams(max_tokens=12, min_tokens=12),
                   on_text=pieces.append)
    assert len(pieces) > 1
    assert "".join(pieces) == gen.text == free_text(lm, "y = ", 12)


def free_text(lm, prompt: str, n: int) -> str:
    return generate(lm, lm.tokenizer.encode(prompt), SamplingParams(max_tokens=n, min_tokens=n)).text


def test_prompt_limits(lm) -> None:
    limit = lm.config.max_position_embeddings
    with pytest.raises(GenerationError, match="empty prompt"):
        generate(lm, [], SamplingParams())
    with pytest.raises(GenerationError, match=f"prompt of {limit} tokens does not fit the model's {limit} positions"):
        generate(lm, [7] * limit, SamplingParams())
    with pytest.raises(GenerationError, match=f"prompt of {limit + 9} tokens"):
        generate(lm, [7] * (limit + 9), SamplingParams())
    last = generate(lm, [7] * (limit - 1), SamplingParams(max_tokens=10, min_tokens=10))
    assert len(last.token_ids) == 1 and last.finish_reason == "length"
    with pytest.raises(GenerationError, match="outside the vocabulary"):
        generate(lm, [lm.config.vocab_size], SamplingParams())


@pytest.mark.parametrize("arch", ["iquestcoder", "llama", "qwen2", "iquestloopcoder"])
def test_cli_create_tiny_for_every_arch(tmp_path: Path, arch: str) -> None:
    from loopls.lsp.cli import main

    assert main(["model", "create-tiny", str(tmp_path / arch), "--arch", arch, "--shards", "2"]) == 0
    lm = load_checkpoint(tmp_path / arch)
    assert lm.config.model_type == arch
    assert generate(lm, lm.tokenizer.encode("x"), SamplingParams(max_tokens=3, min_tokens=3)).token_ids


@pytest.mark.parametrize("stops", [(), ("中文",), ("x\n",)])
def test_incremental_text_equals_a_whole_decode(lm, stops: tuple[str, ...]) -> None:
    from loopls.engine.model.generate import TextStream

    text = "café = '中文'  # ünïcode\n    return x\n"
    ids = lm.tokenizer.encode(text)
    context = lm.tokenizer.encode("y = ")[-1]
    assert len(ids) > len(text) // 2  # multi-byte characters span several byte-level tokens
    pieces: list[str] = []
    stream = TextStream(lm.tokenizer, context, stops, pieces.append)
    stopped = False
    for tid in ids:
        if stream.update(tid):
            stopped = True
            break
    stream.finish()
    expected = text[: text.find(stops[0])] if stops else text
    assert stopped == bool(stops)
    assert stream.text == expected
    assert "".join(pieces) == expected
    assert not any("\ufffd" in p for p in pieces)
