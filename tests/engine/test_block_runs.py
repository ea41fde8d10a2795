"""Block tables of consecutive ids: the CPU attention reads such a table in place, a view of
the cache, instead of gathering its blocks (kernels/cpu.py). The pool hands a growing table
the id after its last block while blocks holding no cached prefix are free, and a Loop window
table the highest ones; cached blocks are evicted in the LRU's order all the same."""

from __future__ import annotations

import pytest

from loopls.engine.model.generate import generate
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.sampler import SamplingParams
from loopls.engine.model.tiny import create_tiny
from loopls.engine.serving.blocks import ROOT_HASH, BlockPool
from loopls.engine.serving.core import EngineCore
from loopls.engine.serving.scheduler import SchedulerConfig
from loopls.engine.serving.sequence import Priority

from core_steps import drain
from random_prompts import random_prompt

BS = 4


def _runs(table: list[int]) -> int:
    """Runs of consecutive ids in a table."""
    return 1 + sum(1 for a, b in zip(table, table[1:]) if b != a + 1)


# -- the pool ------------------------------------------------------------------------------
def test_a_table_grows_on_the_id_after_its_last_block() -> None:
    pool = BlockPool(12, 2)
    table = pool.allocate(2, after=-1)
    window = pool.allocate(2, top=True)
    other = pool.allocate(1)  # no table: the LRU's front, a block holding nothing
    for _ in range(3):  # grown a block at a time, windows beside, as a decode grows them
        table += pool.allocate(1, after=table[-1])
        window += pool.allocate(1, top=True)
    assert table == [0, 1, 3, 4, 5] and _runs(table) == 2  # block 2 was taken: a new run from 3
    assert window == [11, 10, 9, 8, 7] and other == [2]
    pool.check_consistent()


def test_a_run_never_takes_a_cached_block_out_of_lru_order() -> None:
    pool = BlockPool(4, 2)
    a, b = pool.allocate(2, after=-1)
    pool.register(b, ROOT_HASH, [1, 2])
    pool.free([b])  # cached, free: right after a, but the prefix [1, 2] stays cached
    assert pool.allocate(1, after=a) == [2] and pool.evictions == 0
    assert pool.allocate(1, after=2) == [3]
    assert pool.allocate(1, after=3) == [b] and pool.evictions == 1  # no block holding nothing left
    pool.check_consistent()


def test_blocks_uncached_while_free_join_the_plain_blocks_again() -> None:
    pool = BlockPool(3, 2)
    blocks = pool.allocate(3, after=-1)
    for block, chunk in zip(blocks, ([1, 2], [3, 4], [5, 6])):
        pool.register(block, ROOT_HASH, chunk)
    pool.free(blocks)
    pool.check_consistent()
    pool.reset_cache()  # every free block holds nothing now
    pool.check_consistent()
    assert pool.allocate(3, after=-1) == [0, 1, 2] and pool.evictions == 0
    pool.check_consistent()


# -- the engine ----------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["iquestcoder", "iquestloopcoder"])
def lm(request, tmp_path_factory):
    return load_checkpoint(create_tiny(tmp_path_factory.mktemp(request.param), request.param))


def test_a_prompt_prefilled_in_chunks_and_decoded_holds_one_run(lm) -> None:
    # What the language server does for a keystroke: a warm-up of the context, then a
    # request of the context and a new tail, decoded.
    config = SchedulerConfig(num_blocks=256, block_size=BS, max_step_tokens=16, num_speculative_tokens=0)
    core = EngineCore(lm.model, config, eos_ids=())
    context = random_prompt(lm, 70, seed=1)
    core.add("warm", context, SamplingParams(max_tokens=0), Priority.BACKGROUND)
    drain(core)
    prompt = context + random_prompt(lm, 5, seed=2)
    params = SamplingParams(max_tokens=20, min_tokens=20)
    seq = core.add("gen", prompt, params)
    tables = []
    while core.has_work:
        core.step()
        tables.append(list(seq.block_table))
    assert seq.metrics.cached_tokens == 68
    assert len(tables[-2]) == -(-(len(prompt) + 19) // BS) and _runs(tables[-2]) == 1
    assert seq.output_ids == generate(lm, prompt, params).token_ids
    core.pool.check_consistent()
