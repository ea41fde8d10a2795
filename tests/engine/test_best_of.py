"""Log-probabilities from the serving engine, and best-of-k line decoding on the native
backend (engine/backends/best_of.py): the answer is the best-scored of the k greedy
continuations of the k most likely first tokens, decoded as one batch over the shared
prompt; cancelling stops every request of it."""

from __future__ import annotations

import asyncio

import pytest
import torch

from loopls.engine.backends.base import BackendInfo
from loopls.engine.backends.native import NativeBackend
from loopls.engine.model import rerank
from loopls.engine.model.cache import KVCache
from loopls.engine.model.generate import generate
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.serving.async_engine import AsyncEngine
from loopls.engine.serving.scheduler import SchedulerConfig

from random_prompts import random_prompt

CONFIG = SchedulerConfig(num_blocks=128, block_size=8, max_step_tokens=64)


@torch.inference_mode()
def _logprobs(lm, ids: list[int]) -> torch.Tensor:
    """log-softmax of the contiguous model's logits after every position of `ids`: [len, vocab]."""
    cache = KVCache.for_model(lm.model, 1, len(ids), torch.float32, "cpu")
    return torch.log_softmax(lm.model(torch.tensor([ids]), cache)[0].float(), -1)


def _backend(lm, engine: AsyncEngine) -> NativeBackend:
    info = BackendInfo("native", "tiny", None, lm.config.model_type, "cpu", True)
    return NativeBackend(engine, lm.tokenizer, lm.config, info)


def _stop_ids(lm) -> tuple[int, ...]:
    # A fifth of the vocabulary stops a line: the tiny model's candidates end at different lengths.
    return tuple(range(20, lm.config.vocab_size, 5))


def test_best_of_needs_greedy_and_a_known_score() -> None:
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(best_of=3, temperature=0.5)
    with pytest.raises(ValueError, match="best_of_score"):
        SamplingParams(best_of=3, best_of_score="longest")
    with pytest.raises(ValueError, match="logprobs"):
        SamplingParams(logprobs=-1)


def test_scores_prefer_what_they_say() -> None:
    confident, doubtful = [-0.1, -0.1, -0.1], [-1.0]
    assert rerank.best("mean", [(doubtful, 0, True), (confident, 0, True)]) == 1
    assert rerank.best("names", [(confident, 1, True), (doubtful, 0, True)]) == 1  # a made-up name costs a nat
    assert rerank.best("sqrt", [([-0.5] * 9, 0, True), ([-1.0], 0, True)]) == 1  # -1.5 against -1.0
    assert rerank.best("mean", [([-1.0], 0, True), ([-1.0], 0, True)]) == 0  # a tie: the more likely first token
    # another candidate counts only if it stopped by itself; the first always does
    assert rerank.best("mean", [(doubtful, 0, False), (confident, 0, False)]) == 0
    assert rerank.unknown_names("self.undefined_thing(x)", rerank.words("self x = 1")) == 1


async def test_engine_logprobs_are_the_models(lm) -> None:
    """Each output token's log-probability and its step's top ones equal the model's own
    distribution, through prefill, plain decode and prompt-lookup drafts (a repeated prompt).
    No min_tokens: stop tokens it bans leave the distribution (a shift of its normaliser)."""
    prompt = random_prompt(lm, 12) * 3
    params = SamplingParams(max_tokens=10, logprobs=3)
    async with AsyncEngine.from_loaded(lm, CONFIG) as engine:
        out = await engine.submit(prompt, params).result()
        plain = await engine.submit(prompt, SamplingParams(max_tokens=10)).result()
        assert out.metrics["accepted_draft_tokens"] > 0  # the draft path was taken
    assert plain.logprobs is None and plain.token_ids == out.token_ids
    assert len(out.logprobs) == len(out.top_logprobs) == len(out.token_ids) == 10
    ref = _logprobs(lm, prompt + out.token_ids)[len(prompt) - 1 : -1]  # the row before each output token
    for j, tok in enumerate(out.token_ids):
        assert out.logprobs[j] == pytest.approx(float(ref[j, tok]), abs=1e-4)
        values, ids = ref[j].topk(3)
        assert [t for t, _ in out.top_logprobs[j]] == ids.tolist()
        assert [v for _, v in out.top_logprobs[j]] == pytest.approx(values.tolist(), abs=1e-4)
        assert out.top_logprobs[j][0][0] == tok  # greedy: the most likely


@pytest.mark.parametrize("score", rerank.SCORES)
async def test_best_of_is_the_best_scored_greedy_continuation(lm, score: str) -> None:
    """The answer equals the candidate with the best score among the k greedy continuations
    of the k most likely first tokens, each computed on its own (the contiguous path)."""
    prompt, k = random_prompt(lm, 29, seed=3), 4
    params = SamplingParams(max_tokens=24, stop_token_ids=_stop_ids(lm), best_of=k, best_of_score=score)
    values, ids = _logprobs(lm, prompt)[-1].topk(k)
    stops = set(_stop_ids(lm)) | set(lm.tokenizer.special.eos_ids)
    assert ids[0] not in stops  # (a greedy first token that stops ends the request with nothing)
    prompt_words = rerank.words(lm.tokenizer.decode(prompt))
    candidates = []
    for i, (tok, lp) in enumerate(zip(ids.tolist(), values.tolist())):
        if tok in stops:
            candidates.append(([], [lp], True))
            continue
        # the first continues to the request's limit, the others to rerank.OTHER_MAX_TOKENS
        limit = 23 if i == 0 else rerank.OTHER_MAX_TOKENS - 1
        gen = generate(lm, prompt + [tok], SamplingParams(max_tokens=limit, stop_token_ids=_stop_ids(lm)))
        lps = _logprobs(lm, prompt + [tok] + gen.token_ids)[len(prompt) :]
        candidates.append(([tok] + gen.token_ids, [lp] + [float(lps[j, t]) for j, t in enumerate(gen.token_ids)],
                           gen.finish_reason == "stop"))
    assert len({len(c) for c, _, _ in candidates}) > 1, "candidates of one length would not tell the scores apart"
    scored = [(lps, rerank.unknown_names(lm.tokenizer.decode(toks), prompt_words), done)
              for toks, lps, done in candidates]
    expected = candidates[rerank.best(score, scored)][0]
    async with AsyncEngine.from_loaded(lm, CONFIG) as engine:
        backend = _backend(lm, engine)
        stream = backend.submit(prompt, params)
        tokens = [t async for t in stream]
        out = await stream.result()
        hits = engine.stats()["cache_hit_blocks"]
        assert engine.stats()["blocks_used"] == 0
    assert tokens == out.token_ids == expected
    assert out.finish_reason in ("stop", "length") and out.metrics["best_of"] == k
    # every continuation started from the prompt's cached blocks (3 full blocks of 8)
    assert hits >= (k - sum(1 for c, _, _ in candidates if not c)) * (len(prompt) // CONFIG.block_size)


async def test_cancelling_a_best_of_request_mid_batch_stops_every_candidate(lm) -> None:
    prompt = random_prompt(lm, 40, seed=5)
    params = SamplingParams(max_tokens=400, min_tokens=400, best_of=3)
    async with AsyncEngine.from_loaded(lm, CONFIG) as engine:
        backend = _backend(lm, engine)
        stream = backend.submit(prompt, params)
        for _ in range(2000):  # until the three continuations decode together
            if engine.stats()["running"] == 3:
                break
            await asyncio.sleep(0.005)
        assert engine.stats()["running"] == 3
        stream.cancel()
        out = await asyncio.wait_for(stream.result(), 10)
        assert out.finish_reason == "cancelled" and len(out.token_ids) < 400
        assert [t async for t in stream] == []  # nothing is streamed for a cancelled request
        for _ in range(200):
            if engine.stats()["blocks_used"] == 0 and engine.stats()["running"] == 0:
                break
            await asyncio.sleep(0.01)
        assert engine.stats()["running"] == 0 and engine.stats()["blocks_used"] == 0


async def test_a_newer_request_of_the_key_supersedes_a_best_of_request(lm) -> None:
    prompt = random_prompt(lm, 40, seed=6)
    long = SamplingParams(max_tokens=400, min_tokens=400, best_of=3)
    async with AsyncEngine.from_loaded(lm, CONFIG) as engine:
        backend = _backend(lm, engine)
        old = backend.submit(prompt, long, supersede="inline:a")
        for _ in range(2000):
            if engine.stats()["running"] == 3:
                break
            await asyncio.sleep(0.005)
        new = backend.submit(prompt, SamplingParams(max_tokens=4, min_tokens=4), supersede="inline:a")
        assert (await asyncio.wait_for(old.result(), 10)).finish_reason == "cancelled"
        assert len((await new.result()).token_ids) == 4
