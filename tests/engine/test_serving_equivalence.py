"""The serving path computes what the single-sequence path computes.

Reference: `generate.generate` over the contiguous `KVCache` (an independent code path).
The serving engine (paged blocks, packed batches, chunked prefill, prefix-cache hits with the
Loop tail replay, prompt-lookup speculation) must give the same greedy tokens.
"""

from __future__ import annotations

import pytest
import torch

from loopls.engine.model.cache import KVCache
from loopls.engine.serving.core import EngineCore
from loopls.engine.model.generate import generate
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.serving.paged_attention import KVPool, LoopWindow, SeqChunk, paged_forward, tail_tokens
from loopls.engine.model.sampler import SamplingParams
from loopls.engine.serving.scheduler import SchedulerConfig
from loopls.engine.model.tiny import create_tiny

ARCHES = ("iquestcoder", "qwen2", "iquestloopcoder")




@pytest.fixture(scope="module", params=ARCHES)
def lm(request, tmp_path_factory):
    return load_checkpoint(create_tiny(tmp_path_factory.mktemp(request.param), request.param))


def _prompts(lm, lengths: tuple[int, ...], seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    # Avoid the special ids at the bottom of the vocabulary (EOS would end a prompt early).
    return [torch.randint(20, lm.config.vocab_size, (n,), generator=g).tolist() for n in lengths]


def _core(lm, **kw) -> EngineCore:
    cfg = SchedulerConfig(**({"num_blocks": 96, "block_size": 8, "max_step_tokens": 48} | kw))
    return EngineCore(lm.model, cfg, eos_ids=tuple(lm.tokenizer.special.eos_ids))


def _run(core: EngineCore, prompts, params, prefix: str = "r") -> list[list[int]]:
    seqs = [core.add(f"{prefix}{i}", p, params) for i, p in enumerate(prompts)]
    while core.has_work:
        core.step()
    assert all(s.finish_reason in ("length", "stop") for s in seqs)
    return [s.output_ids for s in seqs]


GREEDY = SamplingParams(max_tokens=16, min_tokens=16)


def test_paged_forward_matches_contiguous_forward_for_any_chunking(lm) -> None:
    cfg = lm.config
    (ids,) = _prompts(lm, (70,))
    ref = lm.model(torch.tensor([ids]), KVCache(cfg, 1, 80, torch.float32))[0]
    pool = KVPool(cfg, 16, 8, torch.float32)
    table = [3, 5, 1, 7, 9, 11, 2, 4, 6]  # scattered on purpose
    window = LoopWindow(cfg) if cfg.is_loop else None
    pieces, pos = [], 0
    for n in (5, 20, 1, 30, 14):
        (logits,) = paged_forward(lm.model, [SeqChunk(ids[pos : pos + n], pos, pos, table, window, 0)], pool)
        if window is not None:
            window.commit(pos + n, pos + n)
        pieces.append(logits)
        pos += n
    torch.testing.assert_close(torch.cat(pieces), ref, rtol=1e-4, atol=1e-4)


def test_batched_greedy_equals_single_request(lm) -> None:
    prompts = _prompts(lm, (5, 40, 77, 23, 18))
    single = [generate(lm, p, GREEDY).token_ids for p in prompts]
    batched = _run(_core(lm, num_speculative_tokens=0), prompts, GREEDY)
    assert batched == single
    assert all(len(t) == 16 for t in batched)


def test_prefix_cache_hits_equal_cold_runs(lm) -> None:
    # Prompts share long prefixes (longer than the Loop window W=16) and differ in the tail.
    (base,) = _prompts(lm, (90,), seed=7)
    prompts = [base[:60], base[:75] + [33, 34], base, base[:41]]
    cold = [generate(lm, p, GREEDY).token_ids for p in prompts]
    core = _core(lm, num_speculative_tokens=0)
    first = _run(core, prompts[:1], GREEDY, "a")
    rest = [_run(core, [p], GREEDY, f"b{i}")[0] for i, p in enumerate(prompts[1:])]
    assert first + rest == cold
    # Blocks of 8 reused: 56 tokens shared with prompt 0, then 72 and 40 with prompt 1.
    assert core.pool.hits == 7 + 9 + 5


def test_prefix_hit_reports_cached_and_replayed_tokens(lm) -> None:
    (p,) = _prompts(lm, (64,), seed=3)
    core = _core(lm, num_speculative_tokens=0)
    _run(core, [p], GREEDY, "cold")
    seq = core.add("warm", p + [40], GREEDY)
    while core.has_work:
        core.step()
    assert seq.metrics.cached_tokens == 64
    expected_tail = min(64, tail_tokens(lm.config))
    assert seq.metrics.recomputed_tail_tokens == expected_tail
    assert seq.output_ids == generate(lm, p + [40], GREEDY).token_ids


@pytest.fixture(scope="module")
def loop_lm(tmp_path_factory):
    return load_checkpoint(create_tiny(tmp_path_factory.mktemp("loop"), "iquestloopcoder"))


def test_loop_tail_must_cover_every_layers_window(loop_lm) -> None:
    """Replaying only W-1 tokens would leave deeper layers' windows wrong; the engine replays
    num_layers * (W-1) and matches the cold forward."""
    lm = loop_lm
    cfg = lm.config
    (ids,) = _prompts(lm, (72,), seed=5)
    ref = lm.model(torch.tensor([ids]), KVCache(cfg, 1, 80, torch.float32))[0]
    pool, table = KVPool(cfg, 16, 8, torch.float32), list(range(9))
    paged_forward(lm.model, [SeqChunk(ids[:48], 0, 0, table, LoopWindow(cfg), 0)], pool)
    errors = {}
    for tail in (cfg.loop_window_size - 1, tail_tokens(cfg)):
        chunk = SeqChunk(ids[48 - tail :], 48 - tail, 48, table, LoopWindow(cfg), tail)
        (logits,) = paged_forward(lm.model, [chunk], pool)
        errors[tail] = (logits - ref[48:]).abs().max().item()
    assert errors[tail_tokens(cfg)] < 1e-4
    assert errors[cfg.loop_window_size - 1] > 1e-3


@pytest.mark.parametrize("budget", [7, 64])
def test_speculative_output_equals_plain_greedy(lm, budget: int) -> None:
    # Repetitive prompts so that prompt lookup finds drafts (and some are rejected).
    (a,) = _prompts(lm, (12,), seed=11)
    prompts = [a * 4, (a[:5] + [50, 51]) * 5, a[::-1] * 3]
    params = SamplingParams(max_tokens=24, min_tokens=24)
    plain = _run(_core(lm, num_speculative_tokens=0, max_step_tokens=budget), prompts, params)
    core = _core(lm, num_speculative_tokens=5, max_step_tokens=budget)
    seqs = [core.add(f"s{i}", p, params) for i, p in enumerate(prompts)]
    while core.has_work:
        core.step()
    assert [s.output_ids for s in seqs] == plain
    assert sum(s.metrics.draft_tokens for s in seqs) > 0
    assert core.pool.num_used == 0


def test_seeded_sampling_is_reproducible_in_a_batch(lm) -> None:
    prompts = _prompts(lm, (9, 30))
    params = SamplingParams(max_tokens=12, temperature=0.8, top_k=50, seed=5)
    runs = [_run(_core(lm), prompts, params, f"x{i}") for i in range(2)]
    assert runs[0] == runs[1]
    assert runs[0][0] != _run(_core(lm), prompts[:1], SamplingParams(max_tokens=12, temperature=0.8, seed=6))[0]


def test_stop_strings_and_stop_ids_end_a_request(lm) -> None:
    (p,) = _prompts(lm, (30,), seed=21)
    full = _run(_core(lm), [p], GREEDY, "full")[0]
    k = max(i for i in range(len(full)) if full[i] not in full[:i])  # a first occurrence
    # min_tokens=k keeps EOS out of the way before position k, as it was for `full`.
    by_id = SamplingParams(max_tokens=16, min_tokens=k, stop_token_ids=(full[k],))
    assert _run(_core(lm), [p], by_id, "id")[0] == full[:k]
    decode = lm.tokenizer.decode
    stop = decode(full[: k + 1])[-3:]
    core = EngineCore(lm.model, SchedulerConfig(num_blocks=96, block_size=8), decode=decode)
    seq = core.add("str", p, SamplingParams(max_tokens=16, min_tokens=16, stop=(stop,)))
    while core.has_work:
        core.step()
    assert seq.finish_reason == "stop" and stop in decode(seq.output_ids)
    assert stop not in decode(seq.output_ids[:-1]) and seq.output_ids == full[: len(seq.output_ids)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_serving_on_cuda_equals_generate(tmp_path, dtype: str) -> None:
    lm = load_checkpoint(create_tiny(tmp_path / "m", "iquestloopcoder"), device="cuda", dtype=dtype)
    prompts = _prompts(lm, (5, 40, 77))
    expected = [generate(lm, p, GREEDY).token_ids for p in prompts]
    core = _core(lm)
    assert _run(core, prompts, GREEDY, "cold") == expected
    assert _run(core, prompts, GREEDY, "warm") == expected
    assert core.failed_steps == 0 and core.pool.num_used == 0
