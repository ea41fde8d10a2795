"""What tp_serving_bench.py runs inside the engine's tensor-parallel rank 0 (driver functions,
`WorkerSpec.driver`) and on every rank (`RankGroup.call("run", ...)`).

Everything is measured on the serving path the language server uses: the engine core on
rank 0 schedules, builds and sends each step; every rank replays its decode CUDA graph with
the all-reduces inside; every rank samples its vocabulary shard. Nothing here prints: results go back as dicts.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from loopls.engine.model.collectives import model_all_reduce
from loopls.engine.model.layers import decode_gemm_of
from loopls.engine.model.sampling_params import SamplingParams
from loopls.kernels.ops import attention_splits

from kernel_env import graph_us


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device) -> float:
    """Device-to-device copy, bytes read + written per second (nan on a CPU)."""
    if device.type != "cuda":
        return float("nan")
    x = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    sync(device)
    t = time.perf_counter()
    for _ in range(20):
        y.copy_(x)
    sync(device)
    return 2 * x.numel() * 20 / (time.perf_counter() - t)


def prompt(vocab: int, n: int, seed: int) -> list[int]:
    return torch.randint(20, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def drain(core) -> None:
    while core.has_work:
        core.step()


# -- on every rank -------------------------------------------------------------------------
def allreduce_latency(state, rows_list: list[int], calls: int, repeats: int) -> dict[int, float]:
    """Microseconds per all-reduce of [rows, hidden] in the model's dtype with the variant the
    model uses now: `calls` back to back, captured in one CUDA graph (eager on a CPU)."""
    reduce = model_all_reduce(state.model)
    if reduce is None:
        return {}
    param = next(state.model.parameters())
    hidden = state.model.config.hidden_size
    out = {}
    for rows in rows_list:
        x = torch.ones(rows, hidden, dtype=param.dtype, device=state.device)

        def burst() -> None:
            for _ in range(calls):
                reduce.all_reduce(x.clone())

        burst()  # warm-up (NCCL channels, buffers)
        if state.device.type == "cuda":
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                burst()
            run = graph.replay
        else:
            run = burst
        run()
        sync(state.device)
        t = time.perf_counter()
        for _ in range(repeats):
            run()
        sync(state.device)
        out[rows] = (time.perf_counter() - t) / (repeats * calls) * 1e6
    return out


def gemm_choices(state) -> list[dict]:
    """What runs each decode GEMM shape on this rank, with both timings (kernels/decode_gemm.py)."""
    gemm = decode_gemm_of(state.model)
    return gemm.table() if gemm is not None else []


def gemm_probe(state, shapes: list[tuple[int, int]], rows_list: list[int], calls: int = 28, repeats: int = 20) -> list[dict]:
    """Microseconds per GEMM x [rows, in] @ w [out, in].T in the model's dtype with each BLAS
    library torch can prefer (cuBLAS, cuBLASLt): `calls` back to back in one CUDA graph, over
    enough copies of the weight that they stream from memory as in a decode step, not from L2."""
    if state.device.type != "cuda":
        return []
    dtype = next(state.model.parameters()).dtype
    before = torch.backends.cuda.preferred_blas_library()
    rows_out = []
    try:
        for n_out, n_in in shapes:
            nbytes = n_out * n_in * dtype.itemsize
            copies = max(2, -(-(256 << 20) // nbytes))
            weights = [torch.randn(n_out, n_in, device=state.device, dtype=dtype) for _ in range(copies)]
            for rows in rows_list:
                x = torch.randn(rows, n_in, device=state.device, dtype=dtype)
                row = {"out": n_out, "in": n_in, "rows": rows, "bytes": nbytes, "us": {}}
                for lib in ("cublas", "cublaslt"):
                    torch.backends.cuda.preferred_blas_library(lib)
                    try:
                        row["us"][lib] = graph_us(lambda i: F.linear(x, weights[i % copies]), calls,
                                                  repeats, state.device)
                    except RuntimeError as exc:  # a library that cannot run this shape here
                        row["us"][lib] = float("nan")
                        row["error"] = f"{lib}: {exc}"[:200]
                rows_out.append(row)
            del weights
    finally:
        torch.backends.cuda.preferred_blas_library(before)
    return rows_out


# -- on rank 0 -----------------------------------------------------------------------------
def decode_speed(session, batch: int, context: int, steps: int, profile_steps: int) -> dict:
    """Plain decode of `batch` sequences after `context`-token prompts: tokens/s over `steps`
    timed steps (each ends with the host reading the sampled tokens), then a per-rank profile
    of `profile_steps` more."""
    core = session.core
    vocab = core.model_config.vocab_size
    # Every step until the last prompt is prefilled also decodes the sequences already
    # prefilled (decode first), and async scheduling reads back one step late: enough
    # tokens that no sequence ends inside the measured steps.
    total = steps + profile_steps + 10 + -(-batch * context // core.config.max_step_tokens)
    seqs = [core.add(f"d{batch}-{i}-{time.monotonic_ns()}", prompt(vocab, context, 100 + i),
                     SamplingParams(max_tokens=total, min_tokens=total)) for i in range(batch)]
    while any(s.in_prefill or not s.output_ids for s in seqs):
        core.step()
    for _ in range(3):
        core.step()
    device = core.runner.device
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        core.step()
    sync(device)
    elapsed = time.perf_counter() - t
    profile = _profile(session, core, profile_steps)
    for s in seqs:
        core.abort(s.request_id)
    return {"tok_s": batch * steps / elapsed, "step_ms": 1e3 * elapsed / steps, "profile": profile,
            "tokens": [list(s.output_ids) for s in seqs]}


def greedy_check(core, prompts: list[list[int]], new: int) -> dict:
    """Greedy tokens of `prompts` and the logits of their first sampled row (the prompt's end)."""
    rows: dict[str, torch.Tensor] = {}

    def recording(plan, step, out):
        for item, (first, count) in zip(plan.items, step.item_rows):
            if count and item.seq.request_id not in rows:
                rows[item.seq.request_id] = out[first].float().cpu()

    core.runner.record = recording  # every rank gathers the whole logits rows meanwhile
    try:
        stamp = time.monotonic_ns()
        seqs = [core.add(f"c{i}-{stamp}", p, SamplingParams(max_tokens=new, min_tokens=new)) for i, p in enumerate(prompts)]
        drain(core)
    finally:
        core.runner.record = None
    return {"tokens": [s.output_ids for s in seqs], "logits": [rows[s.request_id] for s in seqs]}


def set_mode(core, mode: str) -> None:
    """Scheduling mode of the engine core from now on: "sync" or "async" (core.py)."""
    core.settle()  # a step still in flight is read back under the mode that launched it
    core.async_scheduling = mode == "async"


def drive_decode(session, variants: list[str | None], batches: list[int], context: int, steps: int,
                 profile_steps: int, check_prompts: list[list[int]], check_new: int, ar_rows: list[int],
                 modes: tuple[str, ...] = ("sync", "async"), deadline: float = float("inf"),
                 gemm_shapes: list[tuple[int, int]] | None = None) -> dict:
    """Per all-reduce variant (None: as set up): all-reduce latency, then per scheduling mode
    decode speed at each batch with a profile and the greedy check. A variant is skipped when
    less time is left before `deadline` (time.monotonic, shared by the processes of a host)
    than the previous one took, so the section returns what it measured instead of running
    out of time."""
    device = session.group.state.device
    out = {"bandwidth": copy_bandwidth(device), "world": session.group.world, "pool": session.info["pool"],
           "blocks": session.info["config"].num_blocks, "variants": {}}
    if gemm_shapes:
        out["gemms"] = session.group.call("run", gemm_probe, gemm_shapes, sorted(set(batches)))[0]
    took = 0.0
    for variant in variants:
        res: dict = {}
        started = time.monotonic()
        if deadline - started < took:
            out["variants"][variant or "default"] = {"skipped": f"out of time ({deadline - started:.0f} s left, "
                                                                f"the previous variant took {took:.0f} s)"}
            continue
        try:
            info = session.rebuild(all_reduce=variant) if variant is not None else session.info
            res.update(running=info["all_reduce"], error=info["all_reduce_error"], graphs=info["graphs"])
            if variant is not None and info["all_reduce"] != variant:
                res["skipped"] = f"{variant} did not start: {info['all_reduce_error'] or 'fell back'}"
                out["variants"][variant or "default"] = res
                continue
            if session.group.world > 1:
                res["allreduce_us"] = session.group.call("run", allreduce_latency, ar_rows, 56, 20)[0]
            res["modes"] = {}
            for mode in modes:
                # A fresh engine core per mode: the same prompts must not find the other
                # mode's blocks in the prefix cache (a hit prefills only the tail, which in
                # bf16 rounds differently and would make the token comparison meaningless).
                # "<sync|async>-cublas": the same with every GEMM on cuBLAS (no DecodeGemm).
                session.rebuild(async_scheduling=mode.startswith("async"), decode_gemm=not mode.endswith("-cublas"))
                res["modes"][mode] = {
                    "decode": {b: decode_speed(session, b, context, steps, profile_steps) for b in batches},
                    "check": greedy_check(session.core, check_prompts, check_new),
                    "gemm_choices": session.group.call("run", gemm_choices),
                }
        except Exception as exc:  # noqa: BLE001 - report the variant's failure, try the next
            res["error"] = f"{type(exc).__name__}: {exc}"
            if "RankError" in res["error"] or "Worker" in res["error"]:
                raise
        out["variants"][variant or "default"] = res
        took = time.monotonic() - started
    return out


def _lengths(count: int, lo: int, hi: int, mean: int, seed: int) -> list[int]:
    """Input lengths lo..hi with the given mean: a clipped log-normal (as serving_bench.py)."""
    gen = torch.Generator().manual_seed(seed)
    mu = float(np.log(mean)) - 0.55**2 / 2
    return torch.empty(count).log_normal_(mean=mu, std=0.55, generator=gen).clamp(lo, hi).int().tolist()


def drive_loop(session, context: int, steps: int, profile_steps: int, levels: list[int], lengths: tuple[int, int, int],
               decode_steps: int, cold_level: int, outputs: int, cold_seconds: float,
               deadline: float = float("inf")) -> dict:
    """The Loop model: batch-1 decode with a profile; decode at each concurrency level over
    contexts drawn from the load's input lengths (their K/V shared through one cached prompt,
    so a level costs its decode steps, not its prefills); and the cold load at one level, for
    at most `cold_seconds` and never past `deadline` (time.monotonic)."""
    core = session.core
    out = {"bandwidth": copy_bandwidth(session.group.state.device), "pool": session.info["pool"],
           "blocks": session.info["config"].num_blocks, "block_size": session.info["config"].block_size,
           "all_reduce": session.info["all_reduce"], "graphs": session.info["graphs"]}
    set_mode(core, "sync")
    out["batch1_sync"] = decode_speed(session, 1, context, steps, 0)
    set_mode(core, "async")  # the rest as the language server runs it on GPUs
    out["batch1"] = decode_speed(session, 1, context, steps, profile_steps)
    lo, hi, mean = lengths
    vocab = core.model_config.vocab_size
    lens = _lengths(max(levels), lo, hi, mean, seed=27)
    base = prompt(vocab, max(lens), 4242)
    started = time.perf_counter()
    seed = core.add("base", base, SamplingParams(max_tokens=1))  # fills the prefix cache once
    while core.has_work and time.monotonic() < deadline - 5:
        core.step()
    out["base_prefill_s"] = time.perf_counter() - started
    out["base_tokens"] = len(base)
    out["base_done"] = seed.finish_reason is not None
    out["levels"] = {}
    if not out["base_done"]:  # the prefill did not finish in time: no level can run
        core.abort(seed.request_id)
        out["levels"] = {level: {"skipped": f"out of time: the {len(base)}-token shared prompt was still in prefill "
                                            f"after {out['base_prefill_s']:.0f} s"} for level in levels}
        return out
    for level in levels:
        if time.monotonic() > deadline - 5:
            out["levels"][level] = {"skipped": "out of time"}
            continue
        out["levels"][level] = _decode_level(session, base, lens[:level], decode_steps, outputs, min(profile_steps, 4))
    cold_seconds = min(cold_seconds, deadline - 5 - time.monotonic())
    if cold_level and cold_seconds > 5:
        out["cold"] = _cold_load(core, cold_level, lo, hi, mean, outputs, cold_seconds)
    return out


def _decode_level(session, base: list[int], lens: list[int], steps: int, outputs: int, profile_steps: int) -> dict:
    """`len(lens)` sequences decoding at contexts `lens` (cached prefixes of `base` plus 16
    tokens of their own): per-step time = ms per output token of each sequence; then a
    per-rank profile of `profile_steps` more steps (all-reduce share at this level), the graph
    batch the steps replay and the attention split count of that batch."""
    core = session.core
    vocab = core.model_config.vocab_size
    stamp = time.monotonic_ns()
    seqs = [core.add(f"L{len(lens)}-{i}-{stamp}", base[:n] + prompt(vocab, 16, 7000 + i),
                     SamplingParams(max_tokens=outputs, min_tokens=min(outputs, steps + 8)))
            for i, n in enumerate(lens)]
    while any(s.in_prefill or not s.output_ids for s in seqs if s.finish_reason is None):
        core.step()
    times, step_log = [], []
    sync(core.runner.device)
    t = time.perf_counter()
    for _ in range(steps):
        # Each step ends with the host reading tokens back (under async scheduling those of
        # the step before, the next one already queued): the time between two returns is
        # one output token of every sequence. No device sync in between, which would stall
        # the overlap it measures.
        events = core.step()
        now = time.perf_counter()
        times.append(1e3 * (now - t))
        t = now
        # The step log: sequences that got a token, and whether any prompt was still waiting
        # or in prefill (a chunk sharing the step with the decodes).
        step_log.append((len(events), len(core.scheduler.waiting), sum(s.in_prefill for s in seqs)))
    produced = len(times) * len(seqs)
    profile = _profile(session, core, profile_steps)
    for s in seqs:
        core.abort(s.request_id)
    executor = core.runner.executor
    bucket = executor.batch_for(len(seqs))
    # The split count the replayed graph was captured with: from its batch, the rank's KV heads
    # and its block tables' width (launch.default_splits), as kernels.ops sizes it.
    kv_heads = executor.model.model.layers[0].self_attn.num_kv_heads
    keys = executor.graphs.tables.shape[-1] * core.config.block_size if bucket else max(lens) + steps + 16
    splits = attention_splits(bucket or len(seqs), kv_heads, keys, core.runner.device)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "tok_s": produced / (sum(times) / 1e3), "mean_context": statistics.mean(lens),
            "max_context": max(lens), "graph_batch": bucket, "step_tokens": sorted({e for e, _, _ in step_log}),
            "steps_with_prefill": sum(1 for _, w, p in step_log if w or p), "attention_splits": splits,
            "cached_tokens": statistics.mean(s.metrics.cached_tokens for s in seqs), "profile": profile}


def _cold_load(core, level: int, lo: int, hi: int, mean: int, outputs: int, seconds: float) -> dict:
    """The deployment report's load at one level, cold: `level` requests in flight (a finished
    one is replaced), every prompt new, until `seconds` pass; per-request ms per output
    token after the first, over requests that finished."""
    vocab = core.model_config.vocab_size
    lens = iter(_lengths(10_000, lo, hi, mean, seed=99))
    params = SamplingParams(max_tokens=outputs, min_tokens=outputs)
    live, done, index, started = [], [], 0, time.perf_counter()
    stamp = time.monotonic_ns()
    generated = 0
    while time.perf_counter() - started < seconds:
        while len(live) < level:
            n = next(lens)
            live.append(core.add(f"cold{index}-{stamp}", prompt(vocab, n, 50_000 + index), params))
            index += 1
        before = sum(len(s.output_ids) for s in live)
        core.step()
        generated += sum(len(s.output_ids) for s in live) - before
        for s in [s for s in live if s.finish_reason is not None]:
            live.remove(s)
            done.append(s)
    wall = time.perf_counter() - started
    for s in live:
        core.abort(s.request_id)
    per_token = sorted(1e3 * (s.metrics.finished - s.metrics.first_token) / (len(s.output_ids) - 1)
                       for s in done if s.finish_reason == "length" and len(s.output_ids) > 1)
    ttft = [s.metrics.first_token - s.metrics.arrival for s in done if s.metrics.first_token]
    return {"level": level, "seconds": wall, "finished": len(done), "started": index,
            "failed": sum(s.finish_reason not in ("length", "stop") for s in done),
            "p50_ms": float(np.percentile(per_token, 50)) if per_token else None,
            "p95_ms": float(np.percentile(per_token, 95)) if per_token else None,
            "tok_s": generated / wall, "ttft_p50_s": float(np.percentile(ttft, 50)) if ttft else None}


def _profile(session, core, steps: int) -> list:
    """The profiler's per-kernel table over `steps` more decode steps (none when 0)."""
    if not steps:
        return []

    def run() -> int:
        for _ in range(steps):
            core.step()
        return steps

    return session.profile(run)
