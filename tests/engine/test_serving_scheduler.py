"""Scheduler behaviour under churn: no leaks, preemption, admission, priorities, budgets."""

from __future__ import annotations

import random

import pytest
import torch

from loopls.engine.serving.blocks import BlockPool, OutOfBlocks, chain_hash, ROOT_HASH
from loopls.engine.serving.core import EngineCore
from loopls.engine.model.generate import generate
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.serving.scheduler import AdmissionError, SchedulerConfig
from loopls.engine.serving.priority import Priority
from loopls.engine.model.tiny import create_tiny
from core_steps import drain




@pytest.fixture(scope="module")
def loop_lm(tmp_path_factory):
    return load_checkpoint(create_tiny(tmp_path_factory.mktemp("loop"), "iquestloopcoder"))


@pytest.fixture(scope="module")
def coder_lm(tmp_path_factory):
    return load_checkpoint(create_tiny(tmp_path_factory.mktemp("coder"), "iquestcoder"))


def _core(lm, **kw) -> EngineCore:
    return EngineCore(lm.model, SchedulerConfig(**kw), eos_ids=tuple(lm.tokenizer.special.eos_ids))


def _assert_idle(core: EngineCore) -> None:
    assert core.pool.num_used == 0, "leaked blocks"
    core.pool.check_consistent()
    assert not core.scheduler.waiting and not core.scheduler.running and not core.requests


# -- block pool ----------------------------------------------------------------------------
def test_pool_refcounts_lru_eviction_and_token_verified_hits() -> None:
    pool = BlockPool(4, 2)
    a, b = pool.allocate(2)
    h1 = pool.register(a, ROOT_HASH, [1, 2])
    pool.register(b, h1, [3, 4])
    pool.free([a, b])  # tail first: b is evicted before a
    assert pool.num_free == 4 and pool.num_cached == 2
    hit, hashes = pool.match_prefix([1, 2, 3, 4, 5], 5)
    assert hit == [a, b] and hashes == [h1, chain_hash(h1, [3, 4])]
    pool.take(hit)
    assert pool.blocks[a].ref_count == 1
    pool.free(hit)
    # Same second block after a different first block: the chained hash makes it a miss.
    assert pool.match_prefix([9, 9, 3, 4], 4)[0] == []
    # A block whose stored tokens disagree with the prompt is never served.
    pool.blocks[a].tokens = (7, 7)
    assert pool.match_prefix([1, 2, 3, 4], 4)[0] == []
    pool.blocks[a].tokens = (1, 2)
    fresh = pool.allocate(3)  # two never-cached blocks first, then the LRU cached one: b
    assert b in fresh and a not in fresh and pool.evictions == 1
    assert pool.match_prefix([1, 2, 3, 4], 4)[0] == [a]
    pool.take([a])
    with pytest.raises(OutOfBlocks):
        pool.allocate(1)
    pool.free(fresh + [a])
    with pytest.raises(RuntimeError):
        pool.free([a])
    pool.check_consistent()


# -- churn ---------------------------------------------------------------------------------
@pytest.mark.parametrize("overlap", [False, True], ids=["sync", "async"])
def test_thousand_random_submits_cancels_and_steps_leave_nothing_behind(loop_lm, overlap: bool) -> None:
    rng = random.Random(1234)
    g = torch.Generator().manual_seed(3)
    base = torch.randint(20, loop_lm.config.vocab_size, (60,), generator=g).tolist()
    # Prompts share prefixes (as successive keystrokes do) and exceed the Loop window W=16.
    prompts = [base[: 20 + 4 * i] for i in range(10)]
    ref = {i: generate(loop_lm, p, SamplingParams(max_tokens=6, min_tokens=6)).token_ids for i, p in enumerate(prompts)}
    # 28 blocks of 4: the longest request takes 16 loop-0 blocks and, while a 24-token chunk
    # runs, 11 window blocks (24 + W-1 keys); several never fit together.
    core = _core(loop_lm, num_blocks=28, block_size=4, max_step_tokens=24, max_num_seqs=6, num_speculative_tokens=3,
                 async_scheduling=overlap)
    live: dict[str, int] = {}
    finished, cancelled, n = [], 0, 0
    for _ in range(1000):
        r = rng.random()
        if r < 0.4:
            k = rng.randrange(len(prompts))
            m = rng.randint(1, 6)
            rid = f"q{n}"
            n += 1
            seq = core.add(rid, prompts[k], SamplingParams(max_tokens=m, min_tokens=m), Priority(rng.randrange(3)), rng.random() < 0.5)
            live[rid] = k
            finished.append((seq, k))
        elif r < 0.65 and live:
            rid = rng.choice(sorted(live))
            core.abort(rid)
            live.pop(rid)
            cancelled += 1
        else:
            for ev in core.step():
                if ev.finished:
                    live.pop(ev.seq.request_id, None)
            core.pool.check_consistent()
    drain(core)
    _assert_idle(core)
    done = [(s, k) for s, k in finished if s.finish_reason == "length"]
    assert cancelled > 100 and len(done) > 100
    for seq, k in done:
        assert seq.output_ids == ref[k][: seq.params.max_tokens]
    assert sum(s.metrics.preemptions for s, _ in finished) > 0
    assert sum(s.metrics.cached_tokens for s, _ in finished) > 0


@pytest.mark.parametrize("overlap", [False, True], ids=["sync", "async"])
def test_preemption_under_a_tiny_pool_completes_every_request(coder_lm, overlap: bool) -> None:
    g = torch.Generator().manual_seed(9)
    prompts = [torch.randint(20, coder_lm.config.vocab_size, (20,), generator=g).tolist() for _ in range(6)]
    params = SamplingParams(max_tokens=16, min_tokens=16)
    ref = [generate(coder_lm, p, params).token_ids for p in prompts]
    # 12 blocks of 4 = 48 slots: each request (36 slots) fits alone, two never fit together.
    core = _core(coder_lm, num_blocks=12, block_size=4, max_step_tokens=64, num_speculative_tokens=0,
                 async_scheduling=overlap)
    seqs = [core.add(f"p{i}", p, params) for i, p in enumerate(prompts)]
    drain(core)
    assert [s.output_ids for s in seqs] == ref
    assert sum(s.metrics.preemptions for s in seqs) > 0
    _assert_idle(core)


def test_request_larger_than_the_cache_is_refused_and_others_keep_running(coder_lm) -> None:
    core = _core(coder_lm, num_blocks=8, block_size=4, num_speculative_tokens=0)
    ok = core.add("ok", [30, 31, 32, 33, 34], SamplingParams(max_tokens=8, min_tokens=8))
    core.step()
    with pytest.raises(AdmissionError, match="whole cache holds 32"):
        core.add("huge", list(range(20, 50)), SamplingParams(max_tokens=8))
    with pytest.raises(AdmissionError, match="vocabulary"):
        core.add("bad", [10**9], SamplingParams())
    with pytest.raises(AdmissionError, match="empty prompt"):
        core.add("empty", [], SamplingParams())
    drain(core)
    assert ok.finish_reason == "length" and len(ok.output_ids) == 8
    _assert_idle(core)


def test_priorities_order_admission_and_preempt_background_work(coder_lm) -> None:
    params = SamplingParams(max_tokens=12, min_tokens=12)
    core = _core(coder_lm, num_blocks=10, block_size=4, max_num_seqs=4, num_speculative_tokens=0)
    background = core.add("bg", list(range(40, 60)), params, Priority.BACKGROUND)
    core.step()
    core.step()
    action = core.add("act", list(range(60, 70)), params, Priority.CODE_ACTION)
    inline = core.add("inl", list(range(70, 80)), params, Priority.INLINE)
    order = []
    while core.has_work:
        order += [ev.seq.request_id for ev in core.step() if ev.finished]
    assert order.index("inl") < order.index("act") < order.index("bg")
    assert background.metrics.preemptions >= 1
    assert inline.metrics.preemptions == 0 and action.finish_reason == "length"
    _assert_idle(core)


def test_decode_first_and_chunked_prefill_respect_the_token_budget(coder_lm) -> None:
    core = _core(coder_lm, num_blocks=64, block_size=8, max_step_tokens=16, num_speculative_tokens=0)
    talker = core.add("talk", list(range(30, 40)), SamplingParams(max_tokens=40, min_tokens=40))
    core.step()
    reader = core.add("read", list(range(40, 140)), SamplingParams(max_tokens=2, min_tokens=2))
    steps = 0
    while reader.finish_reason is None:
        before = len(talker.output_ids)
        plan = core.scheduler.schedule()
        assert sum(item.num_tokens for item in plan.items) <= 16
        assert plan.items[0].seq is talker  # the decode goes first, every step
        produced = core.runner.run(plan)
        for item in plan.items:
            if id(item.seq) in produced:
                new, reason = core._append(item.seq, produced[id(item.seq)])
                core.tables.publish(item.seq)
                if reason:
                    core.requests.pop(item.seq.request_id)
                    core._finish(item.seq, reason)
        assert len(talker.output_ids) == before + 1
        steps += 1
    assert steps >= 100 // 15  # the prompt really was split into chunks
    drain(core)
    _assert_idle(core)


def test_cancel_frees_blocks_immediately(coder_lm) -> None:
    core = _core(coder_lm, num_blocks=32, block_size=4)
    seq = core.add("c", list(range(30, 70)), SamplingParams(max_tokens=20))
    core.step()
    assert core.pool.num_used > 0
    core.abort("c")
    assert core.pool.num_used == 0 and seq.finish_reason == "cancelled"
    assert core.pool.num_cached > 0  # its computed prefix stays reusable
    _assert_idle(core)


def test_cancel_and_preemption_release_loop_window_blocks(loop_lm) -> None:
    params = SamplingParams(max_tokens=30, min_tokens=30)
    # 56 blocks of 4: each request fits alone (with the window of a 64-token chunk); while the
    # background one decodes (23 blocks + its window), the inline one's first chunk does not fit.
    core = _core(loop_lm, num_blocks=56, block_size=4, max_step_tokens=64, num_speculative_tokens=0)
    seq = core.add("c", list(range(30, 80)), params)
    for _ in range(6):
        core.step()
    assert core.tables.window_blocks(seq) > 0
    core.abort("c")
    assert core.pool.num_used == 0 and seq.window_tables == []
    # An inline request preempts a background one holding window blocks.
    bg = core.add("bg", list(range(30, 90)), params, Priority.BACKGROUND)
    for _ in range(6):
        core.step()
    held = len(bg.block_table) + core.tables.window_blocks(bg)
    core.add("inl", list(range(100, 190)), params, Priority.INLINE)
    for _ in range(200):
        core.step()
        if bg.metrics.preemptions:
            break
    assert bg.metrics.preemptions == 1 and held > 0
    assert bg.window_tables == [] and bg.block_table == []  # everything it held went back
    drain(core)
    _assert_idle(core)


def test_loop_memory_is_one_paged_cache_plus_a_window(loop_lm) -> None:
    cfg = loop_lm.config
    bs, keep, loops = 8, cfg.loop_window_size - 1, cfg.loop_num - 1
    core = _core(loop_lm, num_blocks=32, block_size=bs, max_step_tokens=16, num_speculative_tokens=0)
    seq = core.add("w", list(range(30, 70)), SamplingParams(max_tokens=60, min_tokens=60))
    per_slot = cfg.num_key_value_heads * cfg.head_dim * 4  # fp32 bytes of K (or V) per token
    block_bytes = 2 * cfg.num_hidden_layers * bs * per_slot
    # One pool: K and V per layer for every block, whether it holds loop 0 or a window.
    assert core.stats()["kv_pool_bytes"] == 32 * block_bytes
    decodes = 0
    while seq.finish_reason is None:
        core.step()
        if seq.finish_reason is not None:
            break
        # Window blocks held: those a future query can still see, from position
        # num_computed - (W-1) to the end of the table, rounded out to whole blocks.
        live = len(seq.block_table) - (seq.num_computed - keep) // bs
        assert core.tables.window_blocks(seq) == loops * live
        assert core.pool.num_used == len(seq.block_table) + loops * live
        assert core.stats()["loop_window_bytes"] == loops * live * block_bytes
        if not seq.in_prefill:
            decodes += 1
            assert live <= -(-keep // bs) + 1  # about W tokens, whatever the length
    assert decodes > 50 and seq.num_tokens > 6 * cfg.loop_window_size
    drain(core)
    assert core.stats()["loop_window_bytes"] == 0 and core.pool.num_used == 0
