"""Llama-layout and Qwen2 models match Hugging Face transformers on the same checkpoint folder.

transformers is a test-only dependency: it loads the folder `create_tiny` wrote, so the
config.json and weight names are checked as much as the maths.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from loopls.engine.cache import KVCache
from loopls.engine.loader import load_checkpoint
from loopls.engine.tiny import create_tiny

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
    out = hf(ids[:, :6], use_cache=True)
    past, ref = out.past_key_values, [out.logits]
    for i in range(6, 30):
        out = hf(ids[:, i : i + 1], past_key_values=past, use_cache=True)
        past = out.past_key_values
        ref.append(out.logits)
    assert (torch.cat(ours, 1) - torch.cat(ref, 1)).abs().max().item() <= ATOL


@torch.inference_mode()
def test_greedy_tokens_match_transformers_generate(pair) -> None:
    from loopls.engine.generate import generate
    from loopls.engine.sampler import SamplingParams

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
