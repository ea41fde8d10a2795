"""The async request API: streaming, cancellation, superseding, admission, crash recovery."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from loopls.engine.serving.async_engine import AsyncEngine
from loopls.engine.serving.request_frontend import EngineError
from loopls.engine.model.generate import generate
from loopls.engine.serving.runner import ModelRunner
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.serving.scheduler import AdmissionError, SchedulerConfig
from loopls.engine.serving.priority import Priority

from random_prompts import random_prompt


CONFIG = SchedulerConfig(num_blocks=64, block_size=8, max_step_tokens=32)


async def test_stream_yields_the_greedy_tokens_with_metrics(lm) -> None:
    prompt = random_prompt(lm, 40)
    params = SamplingParams(max_tokens=12, min_tokens=12)
    expected = generate(lm, prompt, params).token_ids
    async with AsyncEngine.from_loaded(lm, CONFIG) as engine:
        stream = engine.submit(prompt, params)
        tokens = [t async for t in stream]
        out = await stream.result()
        assert tokens == out.token_ids == expected
        assert out.finish_reason == "length" and out.prompt_tokens == 40
        m = out.metrics
        assert m["queue_s"] >= 0 and m["prefill_s"] > 0 and m["time_to_first_token_s"] >= m["prefill_s"]
        assert m["decode_s"] > 0 and m["peak_blocks"] == 7 and m["cached_tokens"] == 0
        again = engine.submit(prompt + [50], params)
        await again.result()
        assert (await again.result()).metrics["cached_tokens"] == 40
        assert engine.stats()["blocks_used"] == 0


async def test_concurrent_streams_match_single_runs(lm) -> None:
    prompts = [random_prompt(lm, n, seed=n) for n in (10, 33, 57)]
    params = SamplingParams(max_tokens=10, min_tokens=10)
    expected = [generate(lm, p, params).token_ids for p in prompts]
    async with AsyncEngine.from_loaded(lm, CONFIG) as engine:
        streams = [engine.submit(p, params, priority=Priority(i)) for i, p in enumerate(prompts)]

        async def collect(s):
            return [t async for t in s]

        assert await asyncio.gather(*(collect(s) for s in streams)) == expected


async def test_cancel_and_supersede_free_blocks(lm) -> None:
    params = SamplingParams(max_tokens=200, min_tokens=200)
    async with AsyncEngine.from_loaded(lm, CONFIG) as engine:
        first = engine.submit(random_prompt(lm, 50), params, supersede="doc")
        async for _ in first:
            break  # it is running
        second = engine.submit(random_prompt(lm, 51), SamplingParams(max_tokens=3, min_tokens=3), supersede="doc")
        assert (await first.result()).finish_reason == "cancelled"
        assert (await second.result()).finish_reason == "length"
        third = engine.submit(random_prompt(lm, 30), params)
        async for _ in third:
            break
        # cancel from another thread, as a language server's handler might
        threading.Thread(target=engine.cancel, args=(third.request_id,)).start()
        out = await third.result()
        assert out.finish_reason == "cancelled" and len(out.token_ids) < 200
        assert engine.stats()["blocks_used"] == 0
        engine.cancel("no-such-request")  # ignored


async def test_oversized_request_is_refused_while_others_run(lm) -> None:
    async with AsyncEngine.from_loaded(lm, CONFIG) as engine:
        running = engine.submit(random_prompt(lm, 20), SamplingParams(max_tokens=8, min_tokens=8))
        with pytest.raises(AdmissionError, match="whole cache holds 512"):
            engine.submit(random_prompt(lm, 600), SamplingParams(max_tokens=8))
        assert (await running.result()).finish_reason == "length"


class _FailingRunner(ModelRunner):
    """A runner whose forward raises once, as a CUDA out-of-memory error would."""

    def __init__(self, *args, fail_at_step: int, **kw) -> None:
        super().__init__(*args, **kw)
        self.calls, self.fail_at_step = 0, fail_at_step

    def run(self, plan):
        self.calls += 1
        if self.calls == self.fail_at_step:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return super().run(plan)


async def test_a_failed_step_fails_its_requests_and_the_engine_recovers(lm) -> None:
    params = SamplingParams(max_tokens=6, min_tokens=6)
    prompt = random_prompt(lm, 25)
    async with AsyncEngine.from_loaded(lm, CONFIG) as engine:
        core = engine.core
        core.runner = _FailingRunner(lm.model, CONFIG, fail_at_step=2)
        doomed = engine.submit(prompt, params)
        with pytest.raises(EngineError, match="out of memory"):
            async for _ in doomed:
                pass
        out = await doomed.result()
        assert out.finish_reason == "error" and "OutOfMemoryError" in out.error
        assert engine.stats()["failed_steps"] == 1 and engine.stats()["blocks_used"] == 0
        fine = engine.submit(prompt, params)
        assert [t async for t in fine] == generate(lm, prompt, params).token_ids


async def test_shutdown_cancels_live_requests(lm) -> None:
    engine = AsyncEngine.from_loaded(lm, CONFIG)
    engine.start()
    stream = engine.submit(random_prompt(lm, 20), SamplingParams(max_tokens=400, min_tokens=400))
    async for _ in stream:
        break
    await asyncio.to_thread(engine.shutdown)
    assert (await asyncio.wait_for(stream.result(), 5)).finish_reason == "cancelled"


async def test_random_churn_through_the_async_api_leaves_nothing_behind(lm) -> None:
    import random

    rng = random.Random(7)
    base = random_prompt(lm, 60, seed=3)
    # The longest request holds 17 loop-0 blocks plus up to 11 Loop window blocks (a 24-token
    # chunk and the W-1 keys before it): it fits alone, a few of them do not fit together.
    config = SchedulerConfig(num_blocks=32, block_size=4, max_step_tokens=24, max_num_seqs=4)
    async with AsyncEngine.from_loaded(lm, config) as engine:
        streams, asked = [], []
        for i in range(200):
            m, n = rng.randint(1, 6), rng.randint(17, 60)
            s = engine.submit(base[:n], SamplingParams(max_tokens=m, min_tokens=m),
                              priority=Priority(rng.randrange(3)), supersede=f"doc{rng.randrange(3)}")
            streams.append(s)
            asked.append(n)
            if rng.random() < 0.3:
                rng.choice(streams).cancel()
            if rng.random() < 0.3:
                await asyncio.sleep(0.002)
        outs = [await asyncio.wait_for(s.result(), 60) for s in streams]
        assert {o.finish_reason for o in outs} <= {"length", "cancelled"}
        assert sum(o.finish_reason == "length" for o in outs) > 0
        ref = {n: generate(lm, base[:n], SamplingParams(max_tokens=6, min_tokens=6)).token_ids for n in set(asked)}
        for out, n in zip(outs, asked):
            if out.finish_reason == "length":
                assert out.token_ids == ref[n][: len(out.token_ids)]
        stats = engine.stats()
        assert stats["blocks_used"] == 0 and stats["running"] == 0 and stats["waiting"] == 0
        assert stats["failed_steps"] == 0
