"""The serving engine against the goals of issue 14, on one GPU, in one run: one table.

Random bf16 weights of the IQuest-Coder-V1 7B shape (14 layers, hidden 5120, 40/8 heads,
vocab 76800) and of its Loop variant (2 loops, W = 64) are built on the GPU and served by the
engine the language server uses (`EngineCore`: paged K/V, prefix cache, continuous batching,
CUDA-graph decode when the kernels allow it), with the K/V pool sized by `plan_pool`.
Beside it, in the same run: transformers `generate` on the same weights and the bandwidth
roofline (weights + K/V read once per step over the measured copy bandwidth).

Rows: batch-1 and 32-sequence decode; Loop batch-1 and 32; cold prefill of a 16K prompt
(TFLOP/s of model FLOPs, both loops counted) and of one 131K prompt; warm time to first
token with a cached 32K prefix and 64 new tokens; LoopAttention decode at 32K (the kernels'
fused op against the plain-torch reference); the load of the IQuest-Coder-V1 deployment
report (inputs 8K-64K, mean 27K, 256 outputs, 8/16/24/32 concurrent) with P50/P95 ms per
output token and total output tok/s. With --profile, the top kernels of a decode step.

    python bench/serving_bench.py                   # everything, about 10 minutes on an H200
    python bench/serving_bench.py --quick           # fewer repeats, one load level (8)

The engine must be importable as `loopls.engine` (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import time

import numpy as np
import torch

from gpu_decode import build, copy_bandwidth, hf_peer, make_config, spin_up, weight_bytes
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.serving.core import EngineCore
from loopls.engine.serving.memory import plan_pool
from loopls.engine.serving.scheduler import SchedulerConfig

ROWS: list[tuple[str, str, str, str]] = []  # (goal, measured, target, note)


def row(goal: str, measured: str, target: str = "", note: str = "") -> None:
    ROWS.append((goal, measured, target, note))
    print(f"  {goal}: {measured}  [{target}] {note}", flush=True)


def matmul_tflops() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12


def kv_token_bytes(config) -> int:
    return config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 2 * 2


def model_flops(config, params: int, tokens: int, context: int = 0) -> float:
    """Forward FLOPs of one prompt of `tokens` new tokens after `context` cached ones, every
    loop counted: 2 per weight per token for the decoder layers, the LM head for the last
    token only (a prefill computes no other logits; the embedding is a lookup), and causal
    attention (QK and PV)."""
    head = config.vocab_size * config.hidden_size
    layers = params - head * (1 if config.tie_word_embeddings else 2)
    linear = 2 * layers * tokens
    keys = tokens * context + tokens * (tokens + 1) / 2
    attn = 4 * config.num_hidden_layers * config.num_attention_heads * config.head_dim * keys
    if config.is_loop:  # later loops: global attention as loop 0, plus the W-key window
        window = config.num_hidden_layers * config.num_attention_heads * config.head_dim * 4 * tokens
        attn += (config.loop_num - 1) * (attn + window * config.loop_window_size)
    return config.loop_num * linear + 2 * head + attn


def engine(model, args, **overrides) -> EngineCore:
    config = SchedulerConfig(block_size=16, max_num_seqs=args.max_seqs, max_step_tokens=args.step_tokens,
                             num_speculative_tokens=0, **overrides)
    plan = plan_pool(model, config)
    print(f"  pool: {plan.describe()}", flush=True)
    return EngineCore(model, dataclasses.replace(config, num_blocks=plan.num_blocks))


def prompt(vocab: int, n: int, seed: int) -> list[int]:
    return torch.randint(20, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def drain(core: EngineCore) -> None:
    while core.has_work:
        core.step()


@torch.inference_mode()
def decode_speed(core: EngineCore, batch: int, context: int, steps: int) -> float:
    """tokens/s per sequence of plain decode steps with `batch` sequences at `context`."""
    vocab = core.model_config.vocab_size
    seqs = [core.add(f"d{batch}-{i}", prompt(vocab, context, i), SamplingParams(max_tokens=steps + 8, min_tokens=steps + 8))
            for i in range(batch)]
    while any(s.in_prefill or not s.output_ids for s in seqs):
        core.step()
    for _ in range(3):
        core.step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        core.step()
    torch.cuda.synchronize()
    speed = steps / (time.perf_counter() - t)
    for s in seqs:
        core.abort(s.request_id)
    return speed


@torch.inference_mode()
def ttft(core: EngineCore, tokens: list[int], seed: int) -> float:
    seq = core.add(f"t{seed}", tokens, SamplingParams(max_tokens=1))
    torch.cuda.synchronize()
    t = time.perf_counter()
    while not seq.output_ids and seq.finish_reason is None:
        core.step()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t
    drain(core)
    return elapsed


def section_decode(name: str, model, core: EngineCore, args, bw: float) -> float:
    """Rows of batch-1 and batch decode; returns the batch-1 tokens/s."""
    cfg = model.config
    wb = weight_bytes(model) * cfg.loop_num  # a Loop model streams its weights once per loop
    single = 0.0
    for batch in (1, args.batch):
        speed = decode_speed(core, batch, args.context, args.steps)
        single = single or speed
        kv = batch * args.context * kv_token_bytes(cfg) * cfg.loop_num  # loop 0's K/V read per loop
        roof = bw / (wb + kv)
        row(f"{name} decode, batch {batch}, {args.context} context", f"{speed * batch:.0f} tok/s ({100 * speed / roof:.0f}% of {roof * batch:.0f})",
            "≥75%" if batch == 1 and not cfg.is_loop else ("≥70%" if batch == 1 else ("≥60%" if not cfg.is_loop else "")))
    return single


def section_prefill(name: str, model, args) -> None:
    cfg, params = model.config, sum(p.numel() for p in model.parameters())
    core = engine(model, args, enable_prefix_caching=False, cuda_graphs=False)
    ttft(core, prompt(cfg.vocab_size, 2048, 99), 0)  # warm-up (kernel compilation)
    for n, target in ((16384, "≥550 TFLOP/s"), (args.long, "≤10 s")):
        if n > args.long:
            continue
        secs = ttft(core, prompt(cfg.vocab_size, n, n), n)
        tflops = model_flops(cfg, params, n) / secs / 1e12
        row(f"{name} cold prefill {n} tokens", f"{secs:.2f} s, {tflops:.0f} TFLOP/s", target)
    del core
    gc.collect()
    torch.cuda.empty_cache()


def section_warm_ttft(name: str, core: EngineCore, args, target: str) -> None:
    vocab = core.model_config.vocab_size
    base = prompt(vocab, 32768, 5)
    ttft(core, base, 1)  # cold: fills the prefix cache
    times = [ttft(core, base + prompt(vocab, 64, 100 + i), 10 + i) for i in range(args.repeats)]
    row(f"{name} warm TTFT, 32K cached + 64 new", f"{1000 * statistics.median(times):.1f} ms (median of {len(times)})", target)
    if core.model_config.is_loop:
        seq = core.add("kv", base[:-1] + [7], SamplingParams(max_tokens=2))
        core.step()
        blocks = len(seq.block_table) + core.tables.window_blocks(seq)
        per_token = blocks * core.block_bytes / seq.num_computed
        flat = kv_token_bytes(core.model_config)
        row(f"{name} K/V bytes per token at 32K", f"{per_token / 1024:.1f} KiB (loop 0 alone {flat / 1024:.1f} KiB)",
            "= non-Loop + W-token window")
        drain(core)


def section_loop_kernel(args, bw: float) -> None:
    """LoopAttention decode, one sequence at 32K: the kernels' fused op vs the reference."""
    try:
        from loopls.kernels import ops, reference
    except ImportError:
        row("LoopAttention decode 32K", "not measured: no loopls.kernels.ops", "≥2× reference")
        return
    h, kvh, d, bs, ctx, w = 40, 8, 128, 16, 32768, 64
    nb = ctx // bs + 8
    g = torch.Generator(device="cuda").manual_seed(0)
    rand = lambda *s: torch.randn(*s, generator=g, device="cuda", dtype=torch.bfloat16)  # noqa: E731
    k, v, wk, wv = (rand(nb, bs, kvh, d) for _ in range(4))
    q, gw, gb = rand(1, h, d), rand(h, d), rand(h)
    table = torch.arange(ctx // bs, device="cuda", dtype=torch.int32)[None]
    cu, lens = torch.tensor([0, 1], device="cuda"), torch.tensor([ctx], device="cuda")
    args_ = (q, k, v, table, wk, wv, table, cu, lens, d**-0.5, w, gw, gb)

    def timed(fn) -> float:
        for _ in range(3):
            fn(*args_)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(20):
            fn(*args_)
        torch.cuda.synchronize()
        return (time.perf_counter() - t) / 20

    fused, ref = timed(ops.loop_attention), timed(reference.loop_attention)
    moved = (ctx + w) * kvh * d * 2 * 2  # K and V of loop 0 and of the window, bf16
    row("LoopAttention decode 32K (fused vs torch reference)",
        f"{fused * 1e6:.0f} µs vs {ref * 1e6:.0f} µs ({ref / fused:.1f}×), {moved / fused / 1e12:.2f} TB/s of {bw / 1e12:.2f}",
        "≥2× reference")


@torch.inference_mode()
def section_load(model, args) -> None:
    """The deployment-report load: `c` requests in flight, each replaced when it ends."""
    cfg = model.config
    core = engine(model, args)
    gen = torch.Generator().manual_seed(27)
    for c in args.levels:
        total = c * args.waves
        # inputs 8K..64K with mean ~27K: a clipped log-normal
        lengths = (torch.empty(total).log_normal_(mean=10.05, std=0.55, generator=gen)).clamp(8192, 65536).int().tolist()
        pending = [prompt(cfg.vocab_size, n, 1000 + i) for i, n in enumerate(lengths)]
        params = SamplingParams(max_tokens=256, min_tokens=256)
        live, done, started = [], [], time.perf_counter()
        while pending or live:
            while pending and len(live) < c:
                live.append(core.add(f"L{c}-{len(done) + len(live)}", pending.pop(), params))
            core.step()
            for s in [s for s in live if s.finish_reason is not None]:
                live.remove(s)
                done.append(s)
        wall = time.perf_counter() - started
        per_token = sorted(1000 * (s.metrics.finished - s.metrics.first_token) / (len(s.output_ids) - 1)
                           for s in done if s.finish_reason == "length")
        failed = sum(s.finish_reason != "length" for s in done)
        p50, p95 = (float(x) for x in np.percentile(per_token, [50, 95]))
        out_tps = sum(len(s.output_ids) for s in done) / wall
        row(f"load {c} concurrent ({total} requests, mean input {sum(lengths) / total / 1000:.1f}K)",
            f"P50 {p50:.1f} / P95 {p95:.1f} ms per output token, {out_tps:.0f} output tok/s, {failed} failed",
            "no failed request", "report (40B, 4×A100): P50 14.2→22.6 ms, 214→567 tok/s")
    del core
    gc.collect()
    torch.cuda.empty_cache()


@torch.inference_mode()
def profile(core: EngineCore, args) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    vocab = core.model_config.vocab_size
    seqs = [core.add(f"p{i}", prompt(vocab, args.context, i), SamplingParams(max_tokens=40, min_tokens=40)) for i in range(1)]
    while any(s.in_prefill or not s.output_ids for s in seqs):
        core.step()
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            core.step()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12))
    drain(core)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="7b", choices=("7b", "14b", "40b", "small"))
    ap.add_argument("--context", type=int, default=2048, help="prompt tokens before decode")
    ap.add_argument("--steps", type=int, default=64, help="timed decode steps")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-seqs", type=int, default=32)
    ap.add_argument("--step-tokens", type=int, default=8192, help="per-step token budget (prefill chunk)")
    ap.add_argument("--long", type=int, default=131072, help="the long cold prompt")
    ap.add_argument("--levels", default="8,16,24,32", help="concurrency levels of the load")
    ap.add_argument("--waves", type=int, default=2, help="requests per level = level x waves")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip", default="", help="comma list of: hf,loop,prefill,ttft,kernel,load")
    ap.add_argument("--quick", action="store_true", help="one load level (8), one wave, 3 repeats")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.levels, args.waves, args.repeats = "8", 1, 3
    args.levels = [int(x) for x in args.levels.split(",") if x]
    skip = set(args.skip.split(","))
    # As gpu_decode.py and the engine's loader do: cuDNN's SDPA re-plans for every new key
    # length, which would slow transformers' decode several times over.
    torch.backends.cuda.enable_cudnn_sdp(False)
    t0 = time.perf_counter()
    spin_up()
    bw, mm = copy_bandwidth(), matmul_tflops()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, copy {bw / 1e12:.2f} TB/s, "
          f"bf16 matmul {mm:.0f} TFLOP/s", flush=True)
    for arch in ("iquestcoder", "iquestloopcoder"):
        if arch == "iquestloopcoder" and "loop" in skip:
            continue
        name = "Loop" if arch == "iquestloopcoder" else "7B" if args.shape == "7b" else args.shape
        model = build(make_config(args.shape, arch))
        core = engine(model, args)
        print(f"[{time.perf_counter() - t0:.0f} s] {arch}: graphs {'on' if core.runner.graphs else 'off'}", flush=True)
        single = section_decode(name, model, core, args, bw)
        if args.profile:
            profile(core, args)
        if "ttft" not in skip:
            section_warm_ttft(name, core, args, "≤25 ms" if arch == "iquestcoder" else "≤40 ms")
        del core
        gc.collect()
        torch.cuda.empty_cache()
        if arch == "iquestcoder" and "hf" not in skip:
            prefill, tps, diff = hf_peer(model, args.context, args.steps)
            row(f"transformers generate, batch 1, {args.context} context", f"{tps:.0f} tok/s (max|Δlogit| {diff:.3f})",
                "", f"ours {single / tps:.2f}× (goal ≥2.5×)")
        if "prefill" not in skip:
            section_prefill(name, model, args)
        if arch == "iquestcoder" and "load" not in skip:
            section_load(model, args)
        del model
        gc.collect()
        torch.cuda.empty_cache()
        print(f"[{time.perf_counter() - t0:.0f} s] {arch} done", flush=True)
    if "kernel" not in skip:
        section_loop_kernel(args, bw)
    print(f"\n{torch.cuda.get_device_name()}, copy {bw / 1e12:.2f} TB/s, bf16 matmul {mm:.0f} TFLOP/s, "
          f"shape {args.shape}, random bf16 weights, {time.perf_counter() - t0:.0f} s")
    width = max(len(r[0]) for r in ROWS)
    print(f"| {'goal'.ljust(width)} | measured | target | note |\n|{'-' * (width + 2)}|---|---|---|")
    for goal, measured, target, note in ROWS:
        print(f"| {goal.ljust(width)} | {measured} | {target} | {note} |")


if __name__ == "__main__":
    main()
