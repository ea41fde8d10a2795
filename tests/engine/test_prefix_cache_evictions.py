"""The prefix cache of a pool that evicts.

A block computed again while an older copy of it is still cached must stay findable after
that older copy is evicted. Both patterns come from the language server's typing trace: a
line's warm-up that finds the start of its prompt cached but must compute (part of) it again,
and a warm-up that computes again what a generation took from it and extended while the
warm-up was paused. In both, the older copies are released first, so they are evicted first;
the warm-up's copies must then serve the prompt.

The eviction order serves prefix hits: a prefix's deeper blocks go first, blocks holding no
cached prefix before any, and a Loop model's window blocks, released as the window moves on,
age with the loop-0 blocks of their position, so a new line's prompt that shares the start of
an older one still hits it.
"""

from __future__ import annotations

import pytest

from loopls.engine.model.generate import generate
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.tiny import create_tiny
from loopls.engine.serving.blocks import ROOT_HASH, BlockPool
from loopls.engine.serving.core import EngineCore
from loopls.engine.serving.scheduler import SchedulerConfig
from loopls.engine.serving.priority import Priority

from random_prompts import random_prompt
from core_steps import drain

BS = 8
PREFILL = SamplingParams(max_tokens=0)
GEN = SamplingParams(max_tokens=3, min_tokens=3)


@pytest.fixture(scope="module", params=["iquestcoder", "iquestloopcoder"])
def lm(request, tmp_path_factory):
    return load_checkpoint(create_tiny(tmp_path_factory.mktemp(request.param), request.param))


def _core(lm, num_blocks: int) -> EngineCore:
    config = SchedulerConfig(num_blocks=num_blocks, block_size=BS, max_step_tokens=32, num_speculative_tokens=0)
    return EngineCore(lm.model, config, eos_ids=tuple(lm.tokenizer.special.eos_ids))


def _run(core: EngineCore, request_id: str, prompt: list[int], params: SamplingParams,
         priority: Priority = Priority.INLINE):
    seq = core.add(request_id, prompt, params, priority)
    drain(core)
    return seq


def _fill(core: EngineCore, lm) -> None:
    """Run unrelated prompts through the pool until every free block holds a cached prefix
    (as on a server that has been typed at for a while)."""
    for i in range(-(-core.pool.num_blocks * BS // 200)):
        _run(core, f"fill{i}", random_prompt(lm, 200, seed=100 + i), PREFILL, Priority.BACKGROUND)
    assert core.pool.num_cached == core.pool.num_blocks and core.pool.evictions > 0


def _full_hit(prompt: list[int]) -> int:
    """Cached tokens of a complete hit: every full block but the one holding the last token."""
    return (len(prompt) - 1) // BS * BS


def _assert_line_hits_in_full(core, lm, line: list[int]) -> None:
    """A prompt of `line` and 4 more tokens hits every full block and generates a cold
    generation's tokens; nothing is left in use and the pool is consistent."""
    prompt = line + random_prompt(lm, 4, seed=5)
    seq = _run(core, "gen", prompt, GEN)
    assert seq.metrics.cached_tokens == _full_hit(prompt)
    assert seq.output_ids == generate(lm, prompt, GEN).token_ids
    assert core.pool.num_used == 0
    core.pool.check_consistent()


# -- the pool ------------------------------------------------------------------------------
def test_a_block_computed_again_stays_indexed_when_the_older_copy_is_evicted() -> None:
    pool = BlockPool(4, 2)
    (old,) = pool.allocate(1)
    pool.register(old, ROOT_HASH, [1, 2])
    pool.free([old])  # cached, free: the next to be evicted
    (new,) = pool.allocate(1)  # a never-used block: the old copy stays cached
    assert new != old and pool.match_prefix([1, 2, 3], 2)[0] == [old]
    pool.register(new, ROOT_HASH, [1, 2])  # the same prefix computed again
    assert pool.match_prefix([1, 2, 3], 2)[0] == [new]
    # The free older copy is now only a plain free block, the first one given out.
    assert pool.allocate(1) == [old] and pool.evictions == 0
    pool.free([old, new])
    assert pool.match_prefix([1, 2, 3], 2)[0] == [new]
    pool.check_consistent()


def test_two_copies_in_use_both_serve_until_both_are_evicted() -> None:
    pool = BlockPool(3, 2)
    a, b = pool.allocate(2)
    pool.register(a, ROOT_HASH, [1, 2])
    pool.register(b, ROOT_HASH, [1, 2])  # computed at the same time by two sequences
    assert pool.num_cached == 2
    pool.free([a])  # a is released first, so evicted first
    pool.free([b])
    assert pool.match_prefix([1, 2, 3], 2)[0] == [b]  # the most recently released copy
    assert sorted(pool.allocate(2)) == [a, 2]  # the plain block, then the older copy
    assert pool.evictions == 1 and pool.match_prefix([1, 2, 3], 2)[0] == [b]
    pool.check_consistent()


def test_a_block_holding_no_cached_prefix_is_given_out_before_any_cached_block() -> None:
    pool = BlockPool(2, 2)
    cached, plain = pool.allocate(2)
    pool.register(cached, ROOT_HASH, [1, 2])
    pool.free([cached])
    pool.free([plain])  # released later, but it holds nothing a lookup can find
    assert pool.allocate(1) == [plain] and pool.evictions == 0
    assert pool.match_prefix([1, 2, 3], 2)[0] == [cached]
    pool.check_consistent()


def test_window_blocks_released_early_age_with_the_loop0_block_of_their_position() -> None:
    pool = BlockPool(3, 2)
    block, window, other = pool.allocate(3)
    pool.register(block, ROOT_HASH, [1, 2])
    pool.register(window, ROOT_HASH, [1, 2], loop=1)
    pool.free([window])  # trimmed: the window moved on while the sequence ran
    pool.register(other, ROOT_HASH, [5, 6])
    pool.free([other])  # another prompt ended meanwhile
    pool.free([block], window_loops=1)  # the sequence ends
    assert pool.allocate(1) == [other]  # not the window block the prefix [1, 2] needs
    assert pool.lookup(ROOT_HASH, (1, 2))[0] == block and pool.lookup(ROOT_HASH, (1, 2), 1)[0] == window
    assert pool.allocate(2) == [block, window]  # the position's blocks go together
    pool.check_consistent()


def test_the_deeper_blocks_of_a_prefix_are_evicted_first() -> None:
    pool = BlockPool(4, 2)
    table = pool.allocate(2)
    windows = pool.allocate(2)
    parent = ROOT_HASH
    for block, window, chunk in zip(table, windows, ([1, 2], [3, 4])):
        pool.register(window, parent, chunk, loop=1)
        parent = pool.register(block, parent, chunk)
    pool.free(windows)
    pool.free(table, window_loops=1)
    assert pool.allocate(2) == [table[1], windows[1]]
    assert pool.match_prefix([1, 2, 3, 4, 5], 4)[0] == [table[0]]
    pool.check_consistent()


# -- the engine ----------------------------------------------------------------------------
def test_a_warm_up_that_computed_its_start_again_is_hit_after_evictions(lm) -> None:
    """A prompt A and the warm-up of B share a 160-token start; another prompt in between
    evicts part of what A released (its deepest blocks first); the warm-up of B then
    computes part of that start again and A's older copies are evicted while it runs. B's
    prompt must still hit every full block."""
    core = _core(lm, num_blocks=64)
    _fill(core, lm)
    start = random_prompt(lm, 160, seed=1)
    _run(core, "a", start + random_prompt(lm, 80, seed=2), PREFILL, Priority.BACKGROUND)
    _run(core, "other", random_prompt(lm, 160, seed=3), PREFILL, Priority.BACKGROUND)
    line = start + random_prompt(lm, 120, seed=4)
    _run(core, "warm", line, PREFILL, Priority.BACKGROUND)
    _assert_line_hits_in_full(core, lm, line)


def test_a_warm_up_paused_by_a_generation_on_its_start_is_hit_after_evictions(lm) -> None:
    """A warm-up of 300 tokens has computed 64 when a generation on its first 200 arrives:
    the generation takes those 64 from the cache and computes the next 136, and the warm-up,
    going on afterwards, computes them again. The generation's copies are released first; once
    they are evicted the warm-up's own must serve its prompt."""
    # A Loop model's line keeps a window block beside each of its 38 loop-0 blocks (76 in
    # all): the pool holds it beside the other prompt, whose blocks evict its deepest first.
    core = _core(lm, num_blocks=96 if lm.config.loop_num > 1 else 64)
    _fill(core, lm)
    line = random_prompt(lm, 300, seed=1)
    warm = core.add("warm", line, PREFILL, Priority.BACKGROUND)
    core.step()
    core.step()
    assert warm.num_computed == 64
    quick = _run(core, "quick", line[:200] + random_prompt(lm, 3, seed=7), GEN)
    assert quick.metrics.cached_tokens == 64
    drain(core)
    assert warm.finish_reason == "length"
    _run(core, "other", random_prompt(lm, 80, seed=3), PREFILL, Priority.BACKGROUND)
    _assert_line_hits_in_full(core, lm, line)


# -- Loop window blocks age with the prefix they serve --------------------------------------
@pytest.fixture(scope="module")
def loop_lm(tmp_path_factory):
    return load_checkpoint(create_tiny(tmp_path_factory.mktemp("loop"), "iquestloopcoder"))


def test_a_loop_prefix_keeps_its_window_blocks_as_long_as_its_loop0_blocks(loop_lm) -> None:
    """A long prompt A releases its window blocks as its prefill moves on, long before its
    loop-0 blocks; other traffic then evicts some of the cached blocks but not all. A prompt
    sharing A's first 80 tokens must hit them: its loop-0 blocks are still cached, and so
    must be the window blocks just before them."""
    lm = loop_lm
    core = _core(lm, num_blocks=64)
    _fill(core, lm)
    a = random_prompt(lm, 240, seed=1)
    _run(core, "a", a, PREFILL, Priority.BACKGROUND)
    _run(core, "other", random_prompt(lm, 96, seed=3), PREFILL, Priority.BACKGROUND)
    prompt = a[:80] + random_prompt(lm, 40, seed=4)
    assert len(core.pool.match_prefix(prompt, len(prompt) - 1)[0]) == 10  # loop 0 is cached
    seq = _run(core, "b", prompt, GEN)
    assert seq.metrics.cached_tokens == 80
    assert seq.output_ids == generate(lm, prompt, GEN).token_ids
    assert core.pool.num_used == 0
    core.pool.check_consistent()
