"""Tensor parallelism in the serving engine, on CPU ranks (gloo): worker processes, rank 0
scheduling and sending each step, every rank holding its heads' share of the K/V pool.

Two ranks must serve exactly what one rank serves through the engine core: the same greedy
(and seeded) tokens and logits within fp32 rounding, in ragged batches, with prefix-cache
hits, speculative drafts and a cancelled request, for all three architectures. A killed
worker fails the requests in flight with an error and the engine comes back with new workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import signal

import pytest
import torch

from loopls.engine.backends import BackendConfig, BackendError, load_backend
from loopls.engine.model.cache import KVCache
from loopls.engine.model.loader import load_checkpoint, load_tensor_parallel
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.tiny import create_tiny
from loopls.engine.serving.request_frontend import EngineError
from loopls.engine.serving.batch import StepBuilder, TableMirror
from loopls.engine.serving.core import EngineCore
from loopls.engine.serving.parallel_engine import ParallelEngine
from loopls.engine.serving.scheduler import AdmissionError, SchedulerConfig
from loopls.engine.serving.worker_group import WorkerDied, run_driver
from loopls.engine.serving.workers import WorkerSpec

from tp_scenario import GREEDY, drive_scenario, drive_unseeded, scenario

ARCHES = ("iquestcoder", "iquestloopcoder", "qwen2")
CONFIG = SchedulerConfig(num_blocks=160, block_size=8, max_step_tokens=48, max_num_seqs=8)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tp-serving")
    return {arch: str(create_tiny(root / arch, arch, seed=3)) for arch in ARCHES}


def _spec(folder: str, scheduler: SchedulerConfig = CONFIG, **kw) -> WorkerSpec:
    return WorkerSpec(factory=functools.partial(load_tensor_parallel, folder), world=2, device="cpu",
                      scheduler=scheduler, plan_memory=False, **kw)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("arch", ARCHES)
def test_two_ranks_serve_what_one_rank_serves(folders, arch: str) -> None:
    lm = load_checkpoint(folders[arch])
    one = scenario(EngineCore(lm.model, CONFIG, eos_ids=tuple(lm.tokenizer.special.eos_ids)))
    two = run_driver(_spec(folders[arch], driver=drive_scenario), timeout=200)
    assert two["info"]["world"] == "2" and two["info"]["all_reduce"] == "nccl"  # gloo on CPUs
    assert two["tokens"] == one["tokens"] and two["finish"] == one["finish"]
    assert all(len(t) == n for t, n in zip(two["tokens"].values(), (12, 12, 12, 12, 12, 16, 10, 8, 3, 12)))
    assert two["cached"] == one["cached"] and two["cached"]["hit"] >= 72 and two["cached"]["after"] >= 40
    assert two["drafts"] == one["drafts"] and sum(d for d, _ in two["drafts"]) > 0  # verify steps ran
    for rid, rows in one["logits"].items():
        assert two["logits"][rid].shape == rows.shape
        torch.testing.assert_close(two["logits"][rid], rows, rtol=0, atol=1e-4)
    assert two["blocks_used"] == one["blocks_used"] == 0
    # each rank holds half the KV heads: half the pool's bytes for the same blocks
    assert 2 * two["kv_pool_bytes"] == one["kv_pool_bytes"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("arch", ARCHES)
def test_two_ranks_with_async_scheduling_serve_what_one_synchronous_rank_serves(folders, arch: str) -> None:
    """Rank 0 plans and sends step N+1 before reading step N's tokens back; every rank feeds
    them from the tokens it sampled itself in step N."""
    config = dataclasses.replace(CONFIG, num_speculative_tokens=0)
    lm = load_checkpoint(folders[arch])
    one = scenario(EngineCore(lm.model, dataclasses.replace(config, async_scheduling=False),
                              eos_ids=tuple(lm.tokenizer.special.eos_ids)))
    two = run_driver(_spec(folders[arch], dataclasses.replace(config, async_scheduling=True), driver=drive_scenario),
                     timeout=200)
    assert two["fed_steps"] > two["steps"] // 2 and one["fed_steps"] == 0
    cancelled = two["tokens"].pop("cancel")  # read back one step late, it may hold more tokens
    assert cancelled[: len(one["tokens"]["cancel"])] == one["tokens"].pop("cancel")
    assert two["tokens"] == one["tokens"] and two["cached"] == one["cached"]
    for rid, rows in one["logits"].items():
        n = min(len(rows), len(two["logits"][rid]))
        assert n == len(rows) or rid == "cancel"
        torch.testing.assert_close(two["logits"][rid][:n], rows[:n], rtol=0, atol=1e-4)
    assert two["blocks_used"] == 0


@pytest.mark.timeout(200)
def test_unseeded_sampling_is_drawn_alike_on_every_rank(folders) -> None:
    """Each rank draws a request's tokens from the generator state rank 0 sends: the logits
    two ranks computed at every position equal one rank's fed the tokens they sampled."""
    folder = folders["iquestloopcoder"]
    lm = load_checkpoint(folder)
    prompts = [_prompt(n, n) for n in (9, 30, 17)]
    got = run_driver(_spec(folder, dataclasses.replace(CONFIG, num_speculative_tokens=0), driver=drive_unseeded,
                           driver_args={"prompts": prompts}), timeout=150)
    for prompt, tokens, rows in zip(prompts, got["tokens"], got["logits"]):
        # a stop token, or a step queued after the last token (async), adds rows
        assert len(tokens) >= 1 and len(rows) >= len(tokens)
        ids = torch.tensor([prompt + tokens[:-1]])
        cache = KVCache.for_model(lm.model, 1, ids.shape[1], torch.float32, lm.device)
        want = lm.model(ids, cache)[0, len(prompt) - 1 :]
        got_rows = rows[: len(tokens)]
        banned = ~torch.isfinite(got_rows)  # the stop ids `min_tokens` bans at the first position only
        assert not banned[1:].any() and int(banned[0].sum()) <= 8  # a few stop ids, nothing else
        torch.testing.assert_close(got_rows[~banned], want[~banned], rtol=0, atol=1e-4)
    assert len({tuple(t) for t in got["tokens"]}) == 3


def test_table_mirror_follows_the_builder_through_row_growth(folders) -> None:
    """The other ranks rebuild each step's block tables from the writes rank 0 sends, also
    when more sequences are live than the builder's first rows (which then double)."""
    lm = load_checkpoint(folders["iquestloopcoder"])
    core = EngineCore(lm.model, SchedulerConfig(num_blocks=400, block_size=4, max_step_tokens=64, max_num_seqs=20,
                                                num_speculative_tokens=0))
    runner = core.runner
    runner.builder = StepBuilder(4, runner.window_loops, lm.config.max_position_embeddings, journal=True)
    mirror = TableMirror(runner.builder.kinds, runner.builder.width)
    build = runner.builder.build
    checked = []

    def check(*args, **kw):
        step = build(*args, **kw)
        assert (mirror.tables(step) == step.tables).all()
        checked.append(step.num_seqs)
        return step

    runner.builder.build = check
    g = torch.Generator().manual_seed(1)
    for i in range(20):
        core.add(f"r{i}", torch.randint(20, 400, (3 + 5 * i,), generator=g).tolist(), SamplingParams(max_tokens=6))
        if i % 3 == 0:
            core.step()
        if i == 10:
            core.abort("r4")  # a released row is taken by a later sequence
    while core.has_work:
        core.step()
    assert max(checked) > 8


def test_a_failing_rank_ends_the_group_with_its_error(folders) -> None:
    with pytest.raises(WorkerDied, match="rank [01] failed: CheckpointError: .*-missing: no such checkpoint folder"):
        run_driver(_spec(folders["qwen2"] + "-missing", driver=drive_scenario), timeout=120)


def _prompt(n: int, seed: int) -> list[int]:
    return torch.randint(20, 400, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("overlap", [False, True], ids=["sync", "async"])
async def test_a_killed_worker_fails_its_requests_and_the_engine_comes_back(folders, overlap: bool) -> None:
    folder = folders["iquestloopcoder"]
    lm = load_checkpoint(folder)
    core = EngineCore(lm.model, CONFIG, eos_ids=tuple(lm.tokenizer.special.eos_ids))
    expected = {}
    for name, n in (("short", 30), ("other", 50)):
        seq = core.add(name, _prompt(n, n), GREEDY)
        while core.has_work:
            core.step()
        expected[name] = seq.output_ids
    engine = ParallelEngine(_spec(folder, dataclasses.replace(CONFIG, async_scheduling=overlap)), lm.config)
    await asyncio.to_thread(engine.start)
    try:
        with pytest.raises(AdmissionError, match="KV blocks"):
            engine.submit(_prompt(2000, 1), GREEDY)  # refused in the caller's thread
        out = await engine.submit(_prompt(30, 30), GREEDY).result()
        assert out.token_ids == expected["short"] and out.finish_reason == "length"

        stream = engine.submit(_prompt(40, 2), SamplingParams(max_tokens=400, min_tokens=400))
        await anext(stream)  # decoding now
        os.kill(engine.pids[1], signal.SIGKILL)
        with pytest.raises(EngineError, match="rank 1 .* killed by signal 9.*restarted"):
            async for _ in stream:
                pass
        assert (await stream.result()).finish_reason == "error"

        out = await engine.submit(_prompt(50, 50), GREEDY).result()  # waits for the new workers
        assert out.token_ids == expected["other"]
        assert engine.stats()["worker_restarts"] == 1

        old = engine.pids
        os.kill(old[0], signal.SIGKILL)  # rank 0 while idle: the next request waits for new workers
        while engine.pids == old:
            await asyncio.sleep(0.05)
        out = await engine.submit(_prompt(30, 30), GREEDY).result()
        assert out.token_ids == expected["short"] and engine.stats()["worker_restarts"] == 2
    finally:
        await asyncio.to_thread(engine.shutdown)
    assert engine.pids == []


def test_native_backend_splits_over_cpu_ranks(folders) -> None:
    with pytest.raises(BackendError, match="does not divide num_attention_heads 4; valid sizes for this model: 1, 2, 4"):
        load_backend(BackendConfig(model=str(folders["qwen2"]), device="cpu", context_tokens=256, tensor_parallel_size=3))
    backend = load_backend(BackendConfig(model=str(folders["qwen2"]), device="cpu", context_tokens=256, tensor_parallel_size=2))
    try:
        assert backend.info.device == "2 CPU ranks" and backend.stats()["tensor_parallel_size"] == 2
        got = asyncio.run(_complete(backend))
    finally:
        backend.shutdown()
    single = load_backend(BackendConfig(model=str(folders["qwen2"]), device="cpu", context_tokens=256))
    try:
        assert asyncio.run(_complete(single)) == got and len(got) == 12
    finally:
        single.shutdown()


async def _complete(backend) -> list[int]:
    return (await backend.submit(_prompt(20, 4), GREEDY).result()).token_ids
