"""Prefill-only requests (max_tokens 0): a prompt goes into the prefix cache, no token, no
logits row, and never in the way of a generation."""

from __future__ import annotations

import multiprocessing

import pytest

from loopls.engine.backends.base import checked_prompt
from loopls.engine.model.generate import generate
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.tiny import create_tiny
from loopls.engine.serving.async_engine import AsyncEngine
from loopls.engine.serving.core import EngineCore
from loopls.engine.serving.ranks import post
from loopls.engine.serving.scheduler import SchedulerConfig
from loopls.engine.serving.priority import Priority
from loopls.engine.serving.workers import Interrupt

from random_prompts import random_prompt
from core_steps import drain

CONFIG = SchedulerConfig(num_blocks=64, block_size=8, max_step_tokens=32)
PREFILL = SamplingParams(max_tokens=0)


@pytest.fixture(scope="module", params=["iquestcoder", "iquestloopcoder"])
def lm(request, tmp_path_factory):
    return load_checkpoint(create_tiny(tmp_path_factory.mktemp(request.param), request.param))


def _core(lm) -> EngineCore:
    return EngineCore(lm.model, CONFIG, eos_ids=tuple(lm.tokenizer.special.eos_ids))


def test_max_tokens_below_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        SamplingParams(max_tokens=-1)


def test_a_prefilled_prompt_is_a_prefix_hit_and_changes_no_token(lm) -> None:
    core = _core(lm)
    rows: list[int] = []
    core.runner.record = lambda plan, step, logits: rows.append(logits.shape[0])
    shared = random_prompt(lm, 45)
    warm = core.add("warm", shared, PREFILL, Priority.BACKGROUND)
    events = drain(core)
    assert warm.finish_reason == "length" and warm.output_ids == []
    assert [(e.seq.request_id, e.new_tokens, e.finished) for e in events] == [("warm", [], True)]
    assert sum(rows) == 0, "a prefill-only request computes no logits row"
    assert core.pool.num_used == 0 and core.pool.num_cached >= 45 // 8  # its blocks stay cached

    prompt = shared + random_prompt(lm, 7, seed=1)
    params = SamplingParams(max_tokens=6, min_tokens=6)
    seq = core.add("gen", prompt, params)
    drain(core)
    assert seq.metrics.cached_tokens == 40  # the five full blocks of the warm-up
    assert seq.output_ids == generate(lm, prompt, params).token_ids


def test_a_prefill_only_request_cancelled_midway_frees_its_blocks(lm) -> None:
    core = _core(lm)
    core.add("warm", random_prompt(lm, 120), PREFILL, Priority.BACKGROUND)
    core.step()  # one chunk of 32 of its 120 tokens
    assert core.requests["warm"].in_prefill and core.pool.num_used > 0
    seq = core.abort("warm")
    assert seq.finish_reason == "cancelled" and seq.output_ids == []
    assert core.pool.num_used == 0 and not core.has_work
    core.pool.check_consistent()


def test_a_generation_never_waits_behind_a_warm_up(lm) -> None:
    core = _core(lm)
    warm = core.add("warm", random_prompt(lm, 200), PREFILL, Priority.BACKGROUND)
    core.step()  # the warm-up is running, 32 of 200 tokens computed
    params = SamplingParams(max_tokens=4, min_tokens=4)
    prompt = random_prompt(lm, 20, seed=2)
    gen = core.add("gen", prompt, params, Priority.INLINE)
    done_at = None
    for step in range(1, 100):
        before = warm.num_computed
        core.step()
        if done_at is None:
            assert warm.num_computed == before, "the warm-up ran a chunk while a generation was live"
        if gen.finish_reason is not None and done_at is None:
            done_at = step
        if not core.has_work:
            break
    assert done_at == 4  # prefill (20 tokens fit one step) with the first token, then 3 decodes
    assert gen.output_ids == generate(lm, prompt, params).token_ids
    assert warm.finish_reason == "length" and warm.num_computed == 200  # it went on afterwards
    assert core.pool.num_used == 0


def test_a_warm_up_arriving_during_a_generation_waits_for_it(lm) -> None:
    core = _core(lm)
    gen = core.add("gen", random_prompt(lm, 20, seed=3), SamplingParams(max_tokens=5, min_tokens=5), Priority.INLINE)
    core.step()
    warm = core.add("warm", random_prompt(lm, 64), PREFILL, Priority.BACKGROUND)
    while gen.finish_reason is None:
        core.step()
        assert warm.num_computed == 0 and warm in core.scheduler.waiting
    drain(core)
    assert warm.finish_reason == "length" and core.pool.num_used == 0


def test_a_keystrokes_warm_up_joins_a_background_one_at_once_and_goes_first(lm) -> None:
    core = _core(lm)
    background = core.add("new line", random_prompt(lm, 200), PREFILL, Priority.BACKGROUND)
    core.step()  # 32 of its 200 tokens
    line = random_prompt(lm, 40, seed=4)
    typing = core.add("keystroke", line, PREFILL, Priority.TYPING)
    later = core.add("another background", random_prompt(lm, 50, seed=5), PREFILL, Priority.BACKGROUND)
    core.step()  # the keystroke's warm-up starts; the background one waits
    assert typing.num_computed > 0 and typing in core.scheduler.running and background.num_computed == 32
    while typing.finish_reason is None:
        before = background.num_computed
        core.step()
        assert background.num_computed == before, "the background warm-up ran while a keystroke's was running"
    assert later.num_computed == 0  # one of the same priority still waits its turn
    seq = core.add("pause", line + [21], SamplingParams(max_tokens=1))
    drain(core)
    assert seq.metrics.cached_tokens == 40  # the keystroke's blocks are in the prefix cache
    assert background.finish_reason == typing.finish_reason == later.finish_reason == "length"
    assert core.pool.num_used == 0


async def test_the_async_api_ends_a_prefill_only_stream_without_tokens(lm) -> None:
    async with AsyncEngine.from_loaded(lm, CONFIG) as engine:
        stream = engine.submit(random_prompt(lm, 30), PREFILL, priority=Priority.BACKGROUND)
        assert [t async for t in stream] == []
        out = await stream.result()
        assert out.finish_reason == "length" and out.token_ids == [] and out.metrics["prefill_s"] is not None
        again = engine.submit(random_prompt(lm, 30) + [21], SamplingParams(max_tokens=2))
        assert (await again.result()).metrics["cached_tokens"] == 24


def test_the_remote_backends_check_refuses_a_prefill_only_request() -> None:
    with pytest.raises(ValueError, match="prefill-only"):
        checked_prompt([5, 6, 7], 0, 100)
    assert checked_prompt([5, 6, 7], 1, 100) == [5, 6, 7]


def test_a_prefill_only_chunk_is_capped_and_a_generation_s_is_not(lm) -> None:
    core = EngineCore(lm.model, SchedulerConfig(num_blocks=64, block_size=8, max_step_tokens=32,
                                                prefill_only_chunk=8), eos_ids=tuple(lm.tokenizer.special.eos_ids))
    chunks: list[tuple[str, int]] = []
    run = core.runner.run
    core.runner.run = lambda plan: (chunks.extend((i.seq.request_id, i.num_tokens) for i in plan.items), run(plan))[1]
    core.add("warm", random_prompt(lm, 30), PREFILL, Priority.BACKGROUND)
    drain(core)
    assert [n for _, n in chunks] == [8, 8, 8, 6]
    chunks.clear()
    core.add("gen", random_prompt(lm, 30, seed=2), SamplingParams(max_tokens=1), Priority.INLINE)
    drain(core)
    assert chunks == [("gen", 30)]


def test_a_chunk_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="prefill_only_chunk"):
        SchedulerConfig(prefill_only_chunk=0)


def test_prefill_only_requests_run_one_at_a_time_in_the_order_they_came(lm) -> None:
    core = EngineCore(lm.model, SchedulerConfig(num_blocks=64, block_size=8, max_step_tokens=32,
                                                prefill_only_chunk=8), eos_ids=tuple(lm.tokenizer.special.eos_ids))
    steps: list[list[tuple[str, int]]] = []
    run = core.runner.run
    core.runner.run = lambda plan: (steps.append([(i.seq.request_id, i.num_tokens) for i in plan.items]), run(plan))[1]
    core.add("short", random_prompt(lm, 20), PREFILL, Priority.BACKGROUND)
    core.add("full", random_prompt(lm, 20, seed=3), PREFILL, Priority.BACKGROUND)
    drain(core)
    assert steps == [[("short", 8)], [("short", 8)], [("short", 4)], [("full", 8)], [("full", 8)], [("full", 4)]]


def test_a_warm_up_step_given_up_between_layers_leaves_no_trace(lm) -> None:
    core = _core(lm)
    shared = random_prompt(lm, 100)
    warm = core.add("warm", shared, PREFILL, Priority.BACKGROUND)
    asked: list[int] = []
    assert core.step(interrupt=lambda: asked.append(1) is None) == []  # stops before the second layer
    assert asked == [1] and core.stopped_steps == 1 and core.stats()["stopped_steps"] == 1
    assert warm.num_computed == 0 and warm.finish_reason is None and core.pool.num_cached == 0
    params = SamplingParams(max_tokens=5, min_tokens=5)
    prompt = random_prompt(lm, 20, seed=4)
    gen = core.add("gen", prompt, params, Priority.INLINE)
    while gen.finish_reason is None:  # a step holding a generation never asks
        core.step(interrupt=lambda: pytest.fail("a generation's step was asked to stop"))
    assert gen.output_ids == generate(lm, prompt, params).token_ids
    drain(core)
    assert warm.finish_reason == "length" and warm.num_computed == 100
    # The chunk computed again wrote the K/V the given-up one had half written: the prefix
    # is a hit and gives the tokens of a cold prompt.
    longer = shared + random_prompt(lm, 7, seed=5)
    seq = core.add("after", longer, params)
    drain(core)
    assert seq.metrics.cached_tokens == 96
    assert seq.output_ids == generate(lm, longer, params).token_ids
    assert core.pool.num_used == 0
    core.pool.check_consistent()


def test_the_engine_process_gives_up_a_warm_up_step_for_a_generation_only(lm) -> None:
    core = _core(lm)
    core.add("warm", random_prompt(lm, 100), PREFILL, Priority.BACKGROUND)
    core.step()  # it runs
    mine, theirs = multiprocessing.Pipe()
    held: list = []
    interrupt = Interrupt(mine, core, held)
    assert not interrupt()
    post(theirs, ("add", ("warm-2", random_prompt(lm, 90, seed=1), PREFILL, Priority.BACKGROUND, True)))
    post(theirs, ("cancel", "not-live"))
    assert not interrupt(), "another warm-up, or cancelling what does not run, waits for the step"
    generation = ("add", ("gen", random_prompt(lm, 10, seed=2), SamplingParams(max_tokens=3), Priority.INLINE, True))
    post(theirs, generation)
    assert interrupt()
    assert [kind for kind, _ in held] == ["add", "cancel", "add"] and held[2][1][0] == "gen"  # kept, in order
    held.clear()
    post(theirs, ("cancel", "warm"))
    assert interrupt()
    held.clear()
    theirs.close()  # the main process is gone
    assert interrupt()
