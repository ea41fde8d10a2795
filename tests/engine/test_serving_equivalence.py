"""The serving path computes what the single-sequence path computes.

Reference: `generate.generate` over the contiguous `KVCache` (the single-sequence path).
The serving engine (paged blocks, packed ragged batches, chunked prefill, prefix-cache hits,
Loop window blocks, prompt-lookup speculation) must give the same greedy tokens.
"""

from __future__ import annotations

import pytest
import torch

from loopls.engine.model.attention import AttentionMetadata, PagedKV, PagedStore, graph_capturable
from loopls.engine.model.cache import KVCache
from loopls.engine.model.generate import generate
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.tiny import create_tiny
from loopls.engine.serving.core import EngineCore
from loopls.engine.serving.scheduler import SchedulerConfig

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


def _slots(table: list[int], start: int, end: int, bs: int) -> torch.Tensor:
    pos = torch.arange(start, end)
    return torch.tensor(table)[pos // bs] * bs + pos % bs


@torch.inference_mode()
def test_paged_forward_matches_contiguous_forward_for_any_chunking(lm) -> None:
    """The model over scattered pool blocks (window blocks too, block size 5 so the Loop
    window W=16 crosses block edges) equals the contiguous forward, chunk by chunk."""
    cfg = lm.config
    (ids,) = _prompts(lm, (70,))
    ref = lm.model(torch.tensor([ids]), KVCache(cfg, 1, 80, torch.float32))[0]
    bs = 5
    kv = PagedKV(cfg.num_hidden_layers, 60, bs, cfg.num_key_value_heads, cfg.head_dim, torch.float32)
    table = [3, 5, 1, 7, 9, 11, 2, 4, 6, 13, 15, 17, 19, 21]  # scattered on purpose
    windows = [[40, 33, 30, 38, 31, 34, 37, 32, 39, 35, 36, 41, 42, 43]] * (cfg.loop_num - 1 if cfg.is_loop else 0)
    pieces, pos = [], 0
    for n in (5, 20, 1, 30, 14):
        meta = AttentionMetadata(
            cu_seqlens_q=torch.tensor([0, n]),
            seq_lens=torch.tensor([pos + n]),
            block_tables=torch.tensor([table]),
            slots=_slots(table, pos, pos + n, bs),
            window_tables=tuple(torch.tensor([w]) for w in windows),
            window_slots=tuple(_slots(w, pos, pos + n, bs) for w in windows),
        )
        positions = torch.arange(pos, pos + n)
        pieces.append(lm.model.forward_packed(torch.tensor(ids[pos : pos + n]), positions, PagedStore(kv, meta)))
        pos += n
    torch.testing.assert_close(torch.cat(pieces), ref, rtol=1e-4, atol=1e-4)


def test_batched_greedy_equals_single_request(lm) -> None:
    prompts = _prompts(lm, (5, 40, 77, 23, 18))
    single = [generate(lm, p, GREEDY).token_ids for p in prompts]
    batched = _run(_core(lm, num_speculative_tokens=0), prompts, GREEDY)
    assert batched == single
    assert all(len(t) == 16 for t in batched)


def test_ragged_steps_equal_single_requests(lm) -> None:
    """Requests arriving while others decode: steps mix decodes and prefill chunks of
    different lengths at different positions, packed into one forward."""
    prompts = _prompts(lm, (30, 9, 61, 17, 44), seed=4)
    single = [generate(lm, p, GREEDY).token_ids for p in prompts]
    core = _core(lm, num_speculative_tokens=0, max_step_tokens=80)
    shapes = []
    run = core.runner.run

    def record(plan):
        shapes.append([item.num_tokens for item in plan.items])
        return run(plan)

    core.runner.run = record
    seqs = [core.add("g0", prompts[0], GREEDY)]
    core.step()
    core.step()
    seqs.append(core.add("g1", prompts[1], GREEDY))
    core.step()
    core.step()
    seqs += [core.add(f"g{i}", p, GREEDY) for i, p in enumerate(prompts[2:], start=2)]
    while core.has_work:
        core.step()
    assert [s.output_ids for s in seqs] == single
    # Really ragged: two decodes beside two prefill chunks of different lengths in one step.
    assert [1, 1, 61, 17] in shapes


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


def test_prefix_hit_recomputes_nothing(lm) -> None:
    (p,) = _prompts(lm, (64,), seed=3)
    core = _core(lm, num_speculative_tokens=0)
    _run(core, [p], GREEDY, "cold")
    seq = core.add("warm", p + [40], GREEDY)
    core.step()
    # The whole prompt but its last token came from the cache (Loop window blocks included):
    # the first step fed one token and produced the first output.
    assert seq.metrics.cached_tokens == 64 and seq.num_computed == 65 and len(seq.output_ids) == 1
    while core.has_work:
        core.step()
    assert seq.output_ids == generate(lm, p + [40], GREEDY).token_ids


@pytest.mark.parametrize("loops", [2, 3])
@pytest.mark.parametrize("block_size", [4, 5, 16])
def test_loop_prefix_hits_equal_cold_runs(tmp_path_factory, loops: int, block_size: int) -> None:
    folder = create_tiny(tmp_path_factory.mktemp(f"loop{loops}"), "iquestloopcoder", seed=2,
                         overrides={"loop_num": loops, "loop_window_size": 6})
    lm = load_checkpoint(folder)
    (base,) = _prompts(lm, (80,), seed=9)
    prompts = [base[:50], base[:63] + [21, 22, 23], base, base[:27] + [30], base[:71]]
    cold = [generate(lm, p, GREEDY).token_ids for p in prompts]
    core = _core(lm, num_speculative_tokens=0, block_size=block_size, num_blocks=160, max_step_tokens=24)
    warm = [_run(core, [p], GREEDY, f"w{i}")[0] for i, p in enumerate(prompts)]
    assert warm == cold
    assert core.pool.hits > 0
    core.pool.check_consistent()
    assert core.pool.num_used == 0


def test_loop_hit_without_its_window_blocks_is_shortened() -> None:
    """If a later loop's window blocks before the hit were evicted, the hit stops at the
    last block whose window is complete; the output is still the cold one."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        lm = load_checkpoint(create_tiny(Path(tmp), "iquestloopcoder"))
    (p,) = _prompts(lm, (64,), seed=12)
    core = _core(lm, num_speculative_tokens=0)
    _run(core, [p], GREEDY, "cold")
    bs = core.pool.block_size
    gone = tuple(p[6 * bs : 7 * bs])  # block 6 of the prompt, as a loop-1 window block
    for block in core.pool.blocks:
        if block.loop == 1 and block.tokens == gone:
            core.pool._uncache(block)
    seq = core.add("warm", p + [40], GREEDY)
    while core.has_work:
        core.step()
    # A hit of 8 blocks (64 tokens) needs window K/V from position 64 - 15 on, in blocks 6 and
    # 7; so does one of 7. A hit of 6 blocks needs blocks 4 and 5 only.
    assert seq.metrics.cached_tokens == 6 * bs
    assert seq.output_ids == generate(lm, p + [40], GREEDY).token_ids


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
    # A seeded request draws the same tokens alone as beside others.
    assert _run(_core(lm), prompts[1:], params, "alone")[0] == runs[0][1]


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
    core = _core(lm)  # first: on a GPU it fuses the model's projections, which generate() then uses too
    expected = [generate(lm, p, GREEDY).token_ids for p in prompts]
    assert _run(core, prompts, GREEDY, "cold") == expected
    assert _run(core, prompts, GREEDY, "warm") == expected
    assert core.failed_steps == 0 and core.pool.num_used == 0


@pytest.mark.skipif(
    not torch.cuda.is_available() or not graph_capturable(torch.device("cuda")),
    reason="needs CUDA and attention kernels that can be captured (the Triton kernels)",
)
@pytest.mark.parametrize("arch", ["iquestcoder", "iquestloopcoder"])
def test_cuda_graph_decode_equals_eager_decode(tmp_path, arch: str) -> None:
    lm = load_checkpoint(create_tiny(tmp_path / "m", arch), device="cuda", dtype="float32")
    prompts = _prompts(lm, (5, 40, 77, 23, 9))  # 5 sequences: replayed in the graph of 8
    params = SamplingParams(max_tokens=24, min_tokens=24)
    eager = _core(lm, num_speculative_tokens=0, cuda_graphs=False)
    graphed = _core(lm, num_speculative_tokens=0, max_num_seqs=8)
    assert eager.runner.graphs is None and graphed.runner.graphs is not None
    replays = 0
    replay = graphed.runner.graphs.replay

    def count(step, *args):
        nonlocal replays
        replays += 1
        return replay(step, *args)

    graphed.runner.graphs.replay = count
    # On CUDA both run with async scheduling (the default there); the third one without.
    synchronous = _core(lm, num_speculative_tokens=0, max_num_seqs=8, async_scheduling=False)
    assert graphed.async_scheduling and eager.async_scheduling and not synchronous.async_scheduling
    expected = _run(eager, prompts, params, "e")
    assert _run(graphed, prompts, params, "g") == expected == _run(synchronous, prompts, params, "s")
    assert replays > 10 and graphed.failed_steps == 0 and graphed.pool.num_used == 0
