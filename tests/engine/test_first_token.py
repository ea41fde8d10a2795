"""`SamplingParams.allowed_first` (token healing): the first generated token is one of the
allowed ids, in the serving engine (greedy, sampled, beside other requests) and in the
single-sequence path; the tokens after it are the model's own choice again."""

from __future__ import annotations

import pytest
import torch

from loopls.engine.model.generate import generate
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.sampler import SamplingParams
from loopls.engine.model.tiny import create_tiny
from loopls.engine.serving.core import EngineCore
from loopls.engine.serving.scheduler import SchedulerConfig


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return load_checkpoint(create_tiny(tmp_path_factory.mktemp("loop"), "iquestloopcoder"))


def _prompt(lm, n: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(20, lm.config.vocab_size, (n,), generator=g).tolist()


def _serve(lm, requests: list[tuple[list[int], SamplingParams]]) -> list[list[int]]:
    core = EngineCore(lm.model, SchedulerConfig(num_blocks=96, block_size=8, max_step_tokens=48),
                      eos_ids=tuple(lm.tokenizer.special.eos_ids))
    seqs = [core.add(f"r{i}", p, params) for i, (p, params) in enumerate(requests)]
    while core.has_work:
        core.step()
    return [s.output_ids for s in seqs]


def test_the_first_token_is_an_allowed_one(lm) -> None:
    prompt = _prompt(lm, 40, 3)
    free = SamplingParams(max_tokens=6, min_tokens=6)
    (plain,) = _serve(lm, [(prompt, free)])
    allowed = tuple(t for t in (plain[0] + 1, plain[0] + 7, 300) if t < lm.config.vocab_size and t != plain[0])
    healed = SamplingParams(max_tokens=6, min_tokens=6, allowed_first=allowed)
    other = _prompt(lm, 25, 4)
    out, beside = _serve(lm, [(prompt, healed), (other, free)])
    assert out[0] in allowed  # the greedy choice was not allowed: the best allowed one is taken
    assert beside == _serve(lm, [(other, free)])[0]  # other requests are left alone
    # after the first token the model chooses freely: the rest is what greedy decoding gives
    (rest,) = _serve(lm, [(prompt + out[:1], SamplingParams(max_tokens=5, min_tokens=5))])
    assert out[1:] == rest
    # the single-sequence path agrees
    assert generate(lm, prompt, healed).token_ids == out
    for seed in range(4):
        sampled = SamplingParams(max_tokens=3, min_tokens=3, temperature=1.0, seed=seed, allowed_first=allowed)
        assert _serve(lm, [(prompt, sampled)])[0][0] in allowed


def test_allowed_ids_are_checked() -> None:
    with pytest.raises(ValueError):
        SamplingParams(allowed_first=(-1,))
