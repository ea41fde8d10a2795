"""Llama-layout and Qwen2 models match Hugging Face transformers on the same checkpoint folder.

transformers is a test-only dependency: it loads the folder `create_tiny` wrote, so the
config.json and weight names are checked as much as the maths.
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest
import torch

from loopls.engine.model.cache import KVCache
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.tiny import create_tiny

transformers = pytest.importorskip("transformers")

CASES = {
    "iquestcoder": ("iquestcoder", {}, "LlamaForCausalLM"),
    "llama": ("llama", {}, "LlamaForCausalLM"),
    # Llama's attention_bias puts a bias on q, k, v and o.
    "llama-bias-mha": ("llama", {"attention_bias": True, "num_key_value_heads": 4}, "LlamaForCausalLM"),
    "qwen2-tied": ("qwen2", {}, "Qwen2ForCausalLM"),
    "qwen2-untied": ("qwen2", {"tie_word_embeddings": False, "num_key_value_heads": 1}, "Qwen2ForCausalLM"),
}
ATOL = 1e-4


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    arch, overrides, hf_class = CASES[request.param]
    folder = create_tiny(tmp_path_factory.mktemp(request.param), arch=arch, seed=7, overrides=overrides)
    lm = load_checkpoint(folder)
    hf = getattr(transformers, hf_class).from_pretrained(folder, dtype=torch.float32).eval()
    return lm, hf


def _ids(vocab: int, batch: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def test_prefill_logits_match_transformers(pair) -> None:
    lm, hf = pair
    ids = _ids(lm.config.vocab_size, 2, 40)
    ours = lm.model(ids, KVCache(lm.config, 2, 40, torch.float32))
    ref = hf(ids).logits
    assert ours.shape == ref.shape
    assert ref.abs().max() > 0.1  # real logits, not an all-zero output
    assert (ours - ref).abs().max().item() <= ATOL


@torch.inference_mode()
def test_token_by_token_decode_matches_transformers(pair) -> None:
    lm, hf = pair
    ids = _ids(lm.config.vocab_size, 1, 30, seed=1)
    cache = KVCache(lm.config, 1, 30, torch.float32)
    ours = [lm.model(ids[:, :6], cache)] + [lm.model(ids[:, i : i + 1], cache) for i in range(6, 30)]
    # transformers 5.2x renamed past_key_values to cache; accept either.
    key = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"
    out = hf(ids[:, :6], use_cache=True)
    past, ref = out[key], [out.logits]
    for i in range(6, 30):
        out = hf(ids[:, i : i + 1], use_cache=True, **{key: past})
        past = out[key]
        ref.append(out.logits)
    assert (torch.cat(ours, 1) - torch.cat(ref, 1)).abs().max().item() <= ATOL


@torch.inference_mode()
def test_greedy_tokens_match_transformers_generate(pair) -> None:
    from loopls.engine.model.generate import generate
    from loopls.engine.model.sampling_params import SamplingParams

    lm, hf = pair
    prompt = lm.tokenizer.encode("def add(a, b):\n    return")
    ours = generate(lm, prompt, SamplingParams(max_tokens=10, min_tokens=10)).token_ids
    ref = hf.generate(
        torch.tensor([prompt]), max_new_tokens=10, min_new_tokens=10, do_sample=False,
        eos_token_id=list(lm.tokenizer.special.eos_ids), pad_token_id=0,
    )[0, len(prompt):].tolist()
    assert ours == ref


def test_weights_loaded_by_both_are_the_same(pair) -> None:
    lm, hf = pair
    ours = lm.model.state_dict()
    theirs = hf.state_dict()
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name


@torch.inference_mode()
def test_config_as_transformers_writes_it(pair, tmp_path: Path) -> None:
    """A folder saved by transformers itself (its own config.json keys, e.g. rope_parameters
    and dtype in transformers 5) loads and gives the same logits."""
    lm, hf = pair
    hf.save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(lm.path / name, tmp_path / name)
    again = load_checkpoint(tmp_path)
    assert again.config.rope_theta == lm.config.rope_theta
    assert again.config.tie_word_embeddings == lm.config.tie_word_embeddings
    ids = _ids(lm.config.vocab_size, 1, 12, seed=3)
    ours = again.model(ids, KVCache(again.config, 1, 12, torch.float32))
    assert (ours - hf(ids).logits).abs().max().item() <= ATOL
