"""Async scheduling in the serving core: step N+1 is planned and launched before step N's
tokens are read back, its pending tokens fed from the device.

It must serve exactly what the synchronous loop serves: the same tokens and logits for the
three architectures in ragged batches with prefix hits, seeded sampling, stop tokens, stop
strings and EOS, with drafts (those steps fall back to synchronous) and without. A request
cancelled mid-stream, a step that fails when launched or when read back, and 1,000 random
submits and cancels (test_serving_scheduler.py) leave no block behind. On a CPU a launched
step has already run, so these tests prove the bookkeeping, not the overlap; the GPU tests
and bench/tp_serving_bench.py measure that.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import torch

from loopls.engine.model.generate import generate
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.tiny import create_tiny
from loopls.engine.serving.async_engine import AsyncEngine
from loopls.engine.serving.request_frontend import EngineError
from loopls.engine.serving.core import EngineCore
from loopls.engine.serving.runner import ModelRunner
from loopls.engine.serving.scheduler import SchedulerConfig

from tp_scenario import scenario
from core_steps import drain

ARCHES = ("iquestcoder", "iquestloopcoder", "qwen2")
CONFIG = SchedulerConfig(num_blocks=160, block_size=8, max_step_tokens=48, max_num_seqs=8)


@pytest.fixture(scope="module")
def lms(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("async-sched")
    return {arch: load_checkpoint(create_tiny(root / arch, arch, seed=3)) for arch in ARCHES}


def _core(lm, overlap: bool, eos_ids: tuple[int, ...] | None = None, **changes) -> EngineCore:
    config = dataclasses.replace(CONFIG, async_scheduling=overlap, **changes)
    eos = tuple(lm.tokenizer.special.eos_ids) if eos_ids is None else eos_ids
    return EngineCore(lm.model, config, eos_ids=eos, decode=lm.tokenizer.decode)


def _prompt(lm, n: int, seed: int) -> list[int]:
    return torch.randint(20, lm.config.vocab_size, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("drafts", [0, 8], ids=["no-drafts", "drafts"])
@pytest.mark.parametrize("arch", ARCHES)
def test_async_serves_what_sync_serves(lms, arch: str, drafts: int) -> None:
    lm = lms[arch]
    sync = scenario(_core(lm, False, num_speculative_tokens=drafts))
    overlap = scenario(_core(lm, True, num_speculative_tokens=drafts))
    assert sync["fed_steps"] == 0
    if drafts == 0:  # most steps were launched before the previous one was read back
        assert overlap["fed_steps"] > overlap["steps"] // 2
    else:  # greedy sequences may get drafts: those steps fall back to synchronous ones
        drafted = [d for rid, d in zip(sync["tokens"], overlap["drafts"]) if rid != "cancel"]
        assert drafted == [d for rid, d in zip(sync["tokens"], sync["drafts"]) if rid != "cancel"]
        assert sum(d for d, _ in drafted) > 0
    # "cancel" is cancelled after 3 tokens arrive; read back one step late, it may have more.
    cancelled = overlap["tokens"].pop("cancel")
    assert cancelled[: len(sync["tokens"]["cancel"])] == sync["tokens"].pop("cancel")
    assert overlap["tokens"] == sync["tokens"] and overlap["finish"] == sync["finish"]
    assert overlap["cached"] == sync["cached"] and overlap["cached"]["hit"] >= 72
    for rid, rows in sync["logits"].items():
        got = overlap["logits"][rid]
        if rid != "cancel":
            assert got.shape == rows.shape, rid
        n = min(len(got), len(rows))
        torch.testing.assert_close(got[:n], rows[:n], rtol=0, atol=1e-5)
    assert overlap["blocks_used"] == sync["blocks_used"] == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_stop_tokens_strings_and_eos_end_requests_as_in_sync(lms, arch: str) -> None:
    """A request that stops at step N was already queued in step N+1: that token is dropped,
    and the outputs, reasons and the pool end as in the synchronous loop."""
    lm = lms[arch]
    prompts = [_prompt(lm, n, seed) for seed, n in enumerate((23, 40, 9, 31))]
    ref = [generate(lm, p, SamplingParams(max_tokens=12, min_tokens=12)).token_ids for p in prompts]
    eos = ref[0][5]  # the engine's EOS: the first request ends where it first produces it
    params = [
        SamplingParams(max_tokens=12),
        SamplingParams(max_tokens=12, stop_token_ids=(ref[1][3],)),
        SamplingParams(max_tokens=12, stop=(lm.tokenizer.decode(ref[2][2:4]),)),
        SamplingParams(max_tokens=12, min_tokens=8, stop_token_ids=(ref[3][1],)),  # suppressed below 8 tokens
    ]
    outputs = {}
    for overlap in (False, True):
        core = _core(lm, overlap, eos_ids=(eos,), num_speculative_tokens=0)
        seqs = [core.add(f"s{i}", p, sp) for i, (p, sp) in enumerate(zip(prompts, params))]
        core.step()
        core.step()
        late = core.add("late", prompts[1][:20], SamplingParams(max_tokens=12, min_tokens=12))  # ragged
        drain(core)
        outputs[overlap] = [(s.output_ids, s.finish_reason) for s in [*seqs, late]]
        assert core.pool.num_used == 0 and not core.requests
        core.pool.check_consistent()
    assert outputs[True] == outputs[False]
    assert [reason for _, reason in outputs[True]].count("stop") >= 2


def test_a_sequence_never_runs_past_its_last_token(lms) -> None:
    """One whose pending token is its max_tokens-th is not queued again: no wasted step and
    no block beyond what admission counted."""
    lm = lms["iquestcoder"]
    core = _core(lm, True, num_speculative_tokens=0, block_size=4)
    seq = core.add("r", _prompt(lm, 7, 1), SamplingParams(max_tokens=5, min_tokens=5))
    plans = []
    schedule = core.scheduler.schedule

    def recording():
        plan = schedule()
        plans.append([(item.start, item.num_tokens) for item in plan.items])
        return plan

    core.scheduler.schedule = recording
    drain(core)
    assert seq.finish_reason == "length" and len(seq.output_ids) == 5
    # a 7-token prompt, then one decode per new token but the last: positions 7..10
    assert [p for p in plans if p] == [[(0, 7)], [(7, 1)], [(8, 1)], [(9, 1)], [(10, 1)]]
    assert seq.metrics.peak_blocks == 3  # 11 positions


async def test_cancel_mid_stream_and_supersede_free_everything(lms) -> None:
    lm = lms["iquestloopcoder"]
    config = dataclasses.replace(CONFIG, async_scheduling=True, num_speculative_tokens=0)
    prompt = _prompt(lm, 30, 5)
    ref = generate(lm, prompt, SamplingParams(max_tokens=40, min_tokens=40)).token_ids
    async with AsyncEngine.from_loaded(lm, config) as engine:
        stream = engine.submit(prompt, SamplingParams(max_tokens=400, min_tokens=400), supersede="doc")
        got = [await anext(stream) for _ in range(4)]
        stream.cancel()
        rest = [t async for t in stream]
        out = await stream.result()
        assert out.finish_reason == "cancelled" and out.token_ids == (got + rest)
        assert out.token_ids == ref[: len(out.token_ids)]
        first = engine.submit(prompt, SamplingParams(max_tokens=400, min_tokens=400), supersede="doc")
        await anext(first)
        second = engine.submit(prompt, SamplingParams(max_tokens=40, min_tokens=40), supersede="doc")
        assert (await first.result()).finish_reason == "cancelled"
        out = await second.result()
        assert out.token_ids == ref and out.metrics["cached_tokens"] > 0
        for _ in range(100):
            if engine.stats()["blocks_used"] == 0:
                break
            await asyncio.sleep(0.01)
        assert engine.stats()["blocks_used"] == 0 and engine.stats()["running"] == 0


class _FailingRunner(ModelRunner):
    """Fails the k-th launch, or the k-th read-back (a device error surfaces there)."""

    def __init__(self, *args, launch_at: int = 0, collect_at: int = 0, **kw) -> None:
        super().__init__(*args, **kw)
        self.launches = self.collects = 0
        self.launch_at, self.collect_at = launch_at, collect_at

    def launch(self, plan):
        self.launches += 1
        if self.launches == self.launch_at:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return super().launch(plan)

    def collect(self, launched):
        self.collects += 1
        if self.collects == self.collect_at:
            raise RuntimeError("simulated: CUDA error: an illegal memory access was encountered")
        return super().collect(launched)


@pytest.mark.parametrize("where", ["launch", "collect"])
async def test_a_failed_step_fails_its_requests_and_the_engine_goes_on(lms, where: str) -> None:
    lm = lms["iquestcoder"]
    config = dataclasses.replace(CONFIG, async_scheduling=True, num_speculative_tokens=0)
    params = SamplingParams(max_tokens=6, min_tokens=6)
    prompt = _prompt(lm, 25, 2)
    async with AsyncEngine.from_loaded(lm, config) as engine:
        engine.core.runner = _FailingRunner(lm.model, config, **{f"{where}_at": 3})
        doomed = engine.submit(prompt, params)
        with pytest.raises(EngineError, match="out of memory|illegal memory"):
            async for _ in doomed:
                pass
        assert (await doomed.result()).finish_reason == "error"
        fine = engine.submit(prompt, params)
        assert [t async for t in fine] == generate(lm, prompt, params).token_ids
        stats = engine.stats()
        assert stats["failed_steps"] == 1 and stats["blocks_used"] == 0 and stats["running"] == 0


def test_cancel_with_a_step_in_flight_keeps_its_prefix_cached(lms) -> None:
    lm = lms["iquestloopcoder"]
    core = _core(lm, True, num_speculative_tokens=0, block_size=4)
    prompt = _prompt(lm, 40, 8)
    seq = core.add("c", prompt, SamplingParams(max_tokens=20))
    core.step()  # the prefill is launched, not read back
    assert not seq.output_ids and seq.pending == 1
    core.abort("c")
    assert core.pool.num_used == 0 and core.pool.num_cached > 0 and seq.pending == 0
    assert core.step() == [] and not core.has_work  # its step is read back and dropped
    again = core.add("again", prompt + [21], SamplingParams(max_tokens=4, min_tokens=4))
    drain(core)
    assert again.metrics.cached_tokens == 40
    assert again.output_ids == generate(lm, prompt + [21], SamplingParams(max_tokens=4, min_tokens=4)).token_ids
