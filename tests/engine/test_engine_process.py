"""The native engine in a process of its own (`BackendConfig.engine_process`, the language
server's engine on a CPU) serves exactly what the engine on a thread of the caller serves:
the same tokens, log-probabilities, finish reasons and prefix-cache hits for warm-ups,
greedy requests with speculative drafts, seeded sampling, best-of-k, `min_tokens`, stop ids
and stop strings; cancelling and superseding end requests the same way, over-long requests
are refused in the caller's thread, and the status counters are all there. A killed engine
process fails the requests it held with a clear error and is restarted; one that does not stop
when asked is killed."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import torch

from loopls.engine.backends import BackendConfig, load_backend
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.tiny import create_tiny
from loopls.engine.serving.async_engine import AsyncEngine
from loopls.engine.serving.request_frontend import EngineError
from loopls.engine.serving.parallel_engine import ParallelEngine
from loopls.engine.serving.priority import Priority


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    return str(create_tiny(tmp_path_factory.mktemp("engine-process") / "loop", "iquestloopcoder", seed=5))


def _prompt(n: int, seed: int) -> list[int]:
    return torch.randint(20, 400, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


async def _scenario(backend) -> dict:
    """Every kind of request the language server sends, one after another."""
    out: dict = {}

    async def run(name: str, prompt: list[int], params: SamplingParams, **kw) -> None:
        result = await backend.submit(prompt, params, **kw).result()
        out[name] = (result.token_ids, result.finish_reason, result.prompt_tokens,
                     result.metrics.get("cached_tokens"), result.metrics.get("accepted_draft_tokens"),
                     result.logprobs, result.top_logprobs)

    shared = _prompt(70, 1)
    await run("warm-up", shared, SamplingParams(max_tokens=0), priority=Priority.BACKGROUND)
    await run("after warm-up", shared + _prompt(9, 2), SamplingParams(max_tokens=16))
    pattern = _prompt(12, 3)
    await run("drafts", pattern * 5 + pattern[:4], SamplingParams(max_tokens=24))
    await run("seeded", _prompt(40, 4), SamplingParams(max_tokens=12, temperature=0.8, top_k=40, top_p=0.9, seed=11))
    greedy = out["after warm-up"][0]
    stop_id = greedy[4]
    await run("stop id after min_tokens", shared + _prompt(9, 2),
              SamplingParams(max_tokens=16, min_tokens=2, stop_token_ids=(stop_id,)))
    await run("stop id banned by min_tokens", shared + _prompt(9, 2),
              SamplingParams(max_tokens=16, min_tokens=16, stop_token_ids=(stop_id,)))
    text = backend.tokenizer.decode(greedy[3:])
    await run("stop string", shared + _prompt(9, 2), SamplingParams(max_tokens=16, stop=(text[:2],)))
    await run("logprobs", _prompt(33, 6), SamplingParams(max_tokens=6, logprobs=3))
    await run("best of 3", _prompt(50, 7), SamplingParams(max_tokens=10, best_of=3))
    return out


async def _cancelling(backend) -> dict:
    long = SamplingParams(max_tokens=200, min_tokens=200)
    stream = backend.submit(_prompt(30, 8), long)
    await anext(stream)
    stream.cancel()
    cancelled = await stream.result()
    first = backend.submit(_prompt(30, 9), long, supersede="doc")
    await anext(first)
    second = backend.submit(_prompt(31, 9), SamplingParams(max_tokens=4), supersede="doc")
    return {"cancelled": cancelled.finish_reason, "superseded": (await first.result()).finish_reason,
            "superseding": (await second.result()).token_ids, "stats": backend.stats()}


@pytest.mark.timeout(240)
def test_the_engine_process_serves_what_the_engine_thread_serves(folder) -> None:
    results, cancels, engines, idle = {}, {}, {}, {}
    for own_process in (False, True):
        backend = load_backend(BackendConfig(model=folder, device="cpu", context_tokens=256,
                                             engine_process=own_process))
        try:
            engines[own_process] = backend.engine
            idle[own_process] = backend.stats()
            assert backend.info.device == "cpu" and backend.info.prefill_only
            with pytest.raises(ValueError, match="needs 8004 positions"):  # refused at once, in this thread
                backend.submit(_prompt(8000, 1), SamplingParams(max_tokens=4))
            results[own_process] = asyncio.run(_scenario(backend))
            cancels[own_process] = asyncio.run(_cancelling(backend))
        finally:
            backend.shutdown()
    assert isinstance(engines[False], AsyncEngine) and isinstance(engines[True], ParallelEngine)
    assert results[True] == results[False]
    got = results[True]
    assert got["warm-up"][:2] == ([], "length") and got["after warm-up"][3] == 68  # 17 blocks of 4 cached (CPU_BLOCK_SIZE)
    assert got["drafts"][4] > 0  # speculative drafts were accepted
    greedy, stop_id = got["after warm-up"][0], got["after warm-up"][0][4]
    assert got["stop id after min_tokens"][:2] == (greedy[:greedy.index(stop_id, 2)], "stop")
    banned = got["stop id banned by min_tokens"]
    assert len(banned[0]) == 16 and stop_id not in banned[0] and banned[1] == "length"
    assert got["stop string"][1] == "stop" and len(got["logprobs"][6]) == 6
    for own_process in (False, True):
        c = cancels[own_process]
        assert (c["cancelled"], c["superseded"]) == ("cancelled", "cancelled")
        assert c["superseding"] == cancels[False]["superseding"] and len(c["superseding"]) == 4
    assert idle[False]["blocks_free"] == idle[True]["blocks_free"] > 0 and set(idle[False]) <= set(idle[True])
    assert set(cancels[False]["stats"]) <= set(cancels[True]["stats"])
    assert cancels[True]["stats"]["cache_hit_blocks"] == cancels[False]["stats"]["cache_hit_blocks"]


@pytest.mark.timeout(240)
async def test_a_killed_engine_process_fails_its_requests_and_the_next_runs_on_a_new_one(folder) -> None:
    backend = await asyncio.to_thread(load_backend, BackendConfig(model=folder, device="cpu", context_tokens=256,
                                                                   engine_process=True))
    try:
        engine = backend.engine
        expected = (await backend.submit(_prompt(30, 30), SamplingParams(max_tokens=8)).result()).token_ids
        stream = backend.submit(_prompt(40, 2), SamplingParams(max_tokens=400, min_tokens=400))
        await anext(stream)
        (pid,) = engine.pids
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EngineError, match=rf"the engine process \(pid {pid}\) was killed by signal 9 "
                                              r"\(SIGKILL.*memory.*\); the engine process was restarted"):
            async for _ in stream:
                pass
        out = await backend.submit(_prompt(30, 30), SamplingParams(max_tokens=8)).result()
        assert out.token_ids == expected and engine.pids != [pid]
        assert backend.stats()["worker_restarts"] == 1

        (stuck,) = engine.pids
        os.kill(stuck, signal.SIGSTOP)  # it cannot answer "stop": shutting down kills it
        await asyncio.to_thread(engine.shutdown, 2.0)
        assert engine.pids == [] and not os.path.exists(f"/proc/{stuck}")
    finally:
        await asyncio.to_thread(backend.shutdown)
    assert engine.pids == []
