"""Kernel benchmark: each Triton kernel against its plain-torch reference and, for attention,
against PyTorch SDPA on contiguous K/V, on IQuest-Coder-V1 shapes (40 query heads,
8 KV heads, head_dim 128, cache blocks of 16; hidden 5120).

Per row of the first table: median time (triton.testing.do_bench, L2 flushed between runs),
the bytes the kernel must move at least (each input read once, each output written once) over
that time, that rate as a share of the measured device copy bandwidth, and the speedup over
the reference. The prefill table compares, per shape, the split-capable kernel that served
prefill before the prefill kernels existed ("old", `legacy_prefill=True`), the prefill kernel
("new") and SDPA, in TFLOP/s of the attention a causal (or windowed) prefill must compute.

    python bench/kernels_bench.py                     # every row
    python bench/kernels_bench.py --quick             # fewer shapes
    python bench/kernels_bench.py --prefill-only      # the prefill table alone (< 1 min)
    python bench/kernels_bench.py --prefill-variants  # ... plus a sweep of prefill tile configs
    TRITON_INTERPRET=1 python bench/kernels_bench.py --smoke   # tiny shapes, any machine

`--smoke` runs every section on tiny shapes with one untimed-quality call each (on the CPU
through Triton's interpreter when there is no GPU): a check that the script itself runs, not
a measurement. loopls must be importable: `pip install -e .`, or a namespace folder with links
(see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable

import torch

from loopls.kernels import ops, reference

H, KVH, D, BS, HIDDEN = 40, 8, 128, 16, 5120


@dataclasses.dataclass(frozen=True)
class Env:
    device: str
    dtype: torch.dtype
    smoke: bool  # tiny shapes, one call per timing

    def timed(self, fn: Callable[[], object]) -> float:
        """Median milliseconds of fn (smoke: one call, host clock)."""
        if self.smoke:
            start = time.perf_counter()
            fn()
            if self.device == "cuda":
                torch.cuda.synchronize()
            return (time.perf_counter() - start) * 1e3
        import triton.testing

        return triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median")

    def randn(self, *shape: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(*shape, device=self.device, dtype=self.dtype, generator=gen)


def kernel_modules():
    """The Triton kernel modules, called directly so that CPU tensors run them too (smoke)."""
    from loopls.kernels import loop_attention, paged_attention, prefill
    from loopls.kernels.launch import plan_attention, plan_prefill

    return paged_attention, loop_attention, prefill, plan_attention, plan_prefill


def copy_bandwidth(env: Env) -> float:
    """Device-to-device copy of 2 GiB, bytes read + written per second."""
    src = torch.empty(2**30 if not env.smoke else 2**16, dtype=torch.float16, device=env.device).normal_()
    dst = torch.empty_like(src)
    ms = env.timed(lambda: dst.copy_(src))
    return 2 * src.numel() * 2 / (ms * 1e-3)


def matmul_rate(env: Env, gen: torch.Generator) -> float:
    """bf16 (smoke: the run's dtype) matrix product on random data, FLOP per second."""
    n = 8192 if not env.smoke else 64
    a, b = env.randn(n, n, gen=gen), env.randn(n, n, gen=gen)
    return 2 * n**3 / (env.timed(lambda: a @ b) * 1e-3)


def paged_cache(env: Env, batch: int, ctx: int, gen: torch.Generator):
    """A paged cache holding `batch` sequences of `ctx` keys in shuffled blocks."""
    per_seq = -(-ctx // BS)
    nblocks = batch * per_seq
    k = env.randn(nblocks, BS, KVH, D, gen=gen)
    v = env.randn(nblocks, BS, KVH, D, gen=gen)
    tables = torch.randperm(nblocks, device=env.device, generator=gen).view(batch, per_seq).int()
    return k, v, tables


class Table:
    def __init__(self, copy_bw: float) -> None:
        self.copy_bw = copy_bw
        print(f"{'kernel':<34}{'shape':<22}{'ms':>9}{'GB/s':>8}{'% copy':>8}{'TFLOP/s':>9}"
              f"{'ref ms':>9}{'x ref':>7}{'peer':>7}{'peer ms':>9}{'x peer':>8}", flush=True)

    def add(self, kernel, shape, ms, nbytes, ref_ms=None, flops=None, peer=None, peer_ms=None) -> None:
        gbs = nbytes / (ms * 1e-3) / 1e9
        cells = [
            f"{kernel:<34}{shape:<22}{ms:>9.4f}{gbs:>8.0f}{100 * gbs * 1e9 / self.copy_bw:>7.0f}%",
            f"{flops / (ms * 1e-3) / 1e12:>9.1f}" if flops else f"{'':>9}",
            f"{ref_ms:>9.3f}{ref_ms / ms:>6.1f}x" if ref_ms else f"{'':>16}",
            f"{peer:>7}{peer_ms:>9.4f}{peer_ms / ms:>7.2f}x" if peer_ms else "",
        ]
        print("".join(cells), flush=True)


class PrefillTable:
    """Old kernel vs new kernel vs SDPA, per prefill shape, in TFLOP/s."""

    def __init__(self, title: str) -> None:
        print(f"\n{title}", flush=True)
        print(f"{'kernel':<30}{'shape':<26}{'old ms':>10}{'old TF/s':>9}{'new ms':>10}{'new TF/s':>9}"
              f"{'new/old':>8}{'SDPA ms':>10}{'SDPA TF/s':>10}{'new/SDPA':>9}", flush=True)

    def add(self, kernel: str, shape: str, flops: float, old_ms: float | None, new_ms: float,
            sdpa_ms: float | None = None) -> None:
        def rate(ms: float) -> float:
            return flops / (ms * 1e-3) / 1e12

        cells = [
            f"{kernel:<30}{shape:<26}",
            f"{old_ms:>10.3f}{rate(old_ms):>9.1f}" if old_ms else f"{'':>19}",
            f"{new_ms:>10.3f}{rate(new_ms):>9.1f}",
            f"{old_ms / new_ms:>7.2f}x" if old_ms else f"{'':>8}",
            f"{sdpa_ms:>10.3f}{rate(sdpa_ms):>10.1f}{sdpa_ms / new_ms:>8.2f}x" if sdpa_ms else "",
        ]
        print("".join(cells), flush=True)


def bench_decode(env: Env, table: Table, shapes, gen) -> None:
    for batch, ctx in shapes:
        k, v, tables = paged_cache(env, batch, ctx, gen)
        q = env.randn(batch, H, D, gen=gen)
        cu = torch.arange(batch + 1, device=env.device, dtype=torch.int32)
        lens = torch.full((batch,), ctx, device=env.device, dtype=torch.int32)
        args = (q, k, v, tables, cu, lens, D**-0.5)
        splits = ops.attention_splits(batch, KVH, ctx, env.device)
        ws = torch.empty(ops.attention_workspace_numel(batch, H, D, splits), device=env.device)
        out = torch.empty_like(q)
        ms = env.timed(lambda: ops.paged_attention(*args, out=out, num_splits=splits, workspace=ws))
        ref_ms = env.timed(lambda: reference.paged_attention(*args)) if batch * ctx <= 64 * 1024 else None
        # peer: SDPA on contiguous K/V, the G heads of a KV head folded into the query length
        kc = k[tables.long()].reshape(batch, -1, KVH, D)[:, :ctx].transpose(1, 2).contiguous()
        vc = v[tables.long()].reshape(batch, -1, KVH, D)[:, :ctx].transpose(1, 2).contiguous()
        qf = q.view(batch, KVH, H // KVH, D)
        sdpa = torch.nn.functional.scaled_dot_product_attention
        peer_ms = env.timed(lambda: sdpa(qf, kc, vc, scale=D**-0.5))
        nbytes = 2 * batch * ctx * KVH * D * 2
        table.add(f"paged decode (splits {splits})", f"B={batch} ctx={ctx}", ms, nbytes, ref_ms,
                  peer="sdpa", peer_ms=peer_ms)


def bench_decode_variants(env: Env, table: Table, batch: int, ctx: int, gen) -> None:
    """Tile shapes of the decode kernel at one size (the plan picks tile 64, 4 warps)."""
    pa, _, _, plan_attention, _ = kernel_modules()
    k, v, tables = paged_cache(env, batch, ctx, gen)
    q = env.randn(batch, H, D, gen=gen)
    cu = torch.arange(batch + 1, device=env.device, dtype=torch.int32)
    lens = torch.full((batch,), ctx, device=env.device, dtype=torch.int32)
    out = torch.empty_like(q)
    base = plan_attention(q, k, tables, ctx, None, None)
    for tile_n, warps, stages in [(32, 4, 2), (64, 4, 3), (64, 8, 2), (128, 4, 2), (128, 8, 2)]:
        plan = dataclasses.replace(base, tile_n=tile_n, num_warps=warps, num_stages=stages)
        ms = env.timed(lambda: pa._launch(plan, out, q, k, v, tables, cu, lens, D**-0.5, 0))
        table.add(f"  variant tile {tile_n} warps {warps} st {stages}", f"B={batch} ctx={ctx}", ms,
                  2 * batch * ctx * KVH * D * 2)


def bench_loop_decode(env: Env, table: Table, shapes, window: int, gen) -> None:
    for batch, ctx in shapes:
        k, v, tables = paged_cache(env, batch, ctx, gen)
        wk, wv, wtables = paged_cache(env, batch, ctx, gen)  # the window cache (only W keys are read)
        q = env.randn(batch, H, D, gen=gen)
        gw = env.randn(H, D, gen=gen) * 0.05
        gb = env.randn(H, gen=gen)
        cu = torch.arange(batch + 1, device=env.device, dtype=torch.int32)
        lens = torch.full((batch,), ctx, device=env.device, dtype=torch.int32)
        args = (q, k, v, tables, wk, wv, wtables, cu, lens, D**-0.5, window, gw, gb)
        splits = ops.attention_splits(batch, KVH, ctx, env.device)
        ws = torch.empty(ops.attention_workspace_numel(batch, H, D, splits, loop=True), device=env.device)
        out = torch.empty_like(q)
        ms = env.timed(lambda: ops.loop_attention(*args, out=out, num_splits=splits, workspace=ws))
        ref_ms = env.timed(lambda: reference.loop_attention(*args))
        nbytes = 2 * batch * (ctx + window) * KVH * D * 2
        table.add(f"fused loop decode (splits {splits})", f"B={batch} ctx={ctx} W={window}", ms, nbytes, ref_ms)


def attention_flops(first: int, last: int, window: int = 0) -> float:
    """FLOPs of QK^T and PV for queries at positions first..last-1 (causal, or W keys each)."""
    keys = sum(min(p + 1, window) if window else p + 1 for p in range(first, last))
    return 4 * H * D * keys


def bench_prefill(env: Env, ptable: PrefillTable, lengths, gen, window: int = 0) -> None:
    """One sequence of T new tokens from position 0: causal (SDPA beside it) or windowed."""
    pa = kernel_modules()[0]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    for t in lengths:
        k, v, tables = paged_cache(env, 1, t, gen)
        q = env.randn(t, H, D, gen=gen)
        cu = torch.tensor([0, t], device=env.device, dtype=torch.int32)
        lens = torch.tensor([t], device=env.device, dtype=torch.int32)
        args = (q, k, v, tables, cu, lens, D**-0.5, window)
        new_ms = env.timed(lambda: pa.paged_attention(*args))
        old_ms = env.timed(lambda: pa.paged_attention(*args, legacy_prefill=True))
        sdpa_ms = None
        if not window:
            # SDPA, causal, on contiguous K/V expanded to all heads (outside the timing)
            kc = k[tables.long()].reshape(1, -1, KVH, D)[:, :t].transpose(1, 2).repeat_interleave(H // KVH, 1)
            vc = v[tables.long()].reshape(1, -1, KVH, D)[:, :t].transpose(1, 2).repeat_interleave(H // KVH, 1)
            qc = q.transpose(0, 1)[None]
            sdpa_ms = env.timed(lambda: sdpa(qc, kc, vc, is_causal=True, scale=D**-0.5))
        name = "paged prefill" if not window else "paged prefill, window"
        shape = f"T={t}" if not window else f"T={t} W={window}"
        ptable.add(name, shape, attention_flops(0, t, window), old_ms, new_ms, sdpa_ms)


def bench_prefill_chunks(env: Env, ptable: PrefillTable, batch: int, chunk: int, prefix: int, gen) -> None:
    """`batch` sequences each adding `chunk` tokens to `prefix` cached ones (chunked prefill)."""
    pa = kernel_modules()[0]
    ctx = prefix + chunk
    k, v, tables = paged_cache(env, batch, ctx, gen)
    q = env.randn(batch * chunk, H, D, gen=gen)
    cu = torch.arange(0, batch * chunk + 1, chunk, device=env.device, dtype=torch.int32)
    lens = torch.full((batch,), ctx, device=env.device, dtype=torch.int32)
    args = (q, k, v, tables, cu, lens, D**-0.5)
    new_ms = env.timed(lambda: pa.paged_attention(*args))
    old_ms = env.timed(lambda: pa.paged_attention(*args, legacy_prefill=True))
    ptable.add("paged prefill, cached prefix", f"B={batch} T={chunk} +{prefix}",
               batch * attention_flops(prefix, ctx), old_ms, new_ms)


def loop_inputs(env: Env, t: int, window: int, gen):
    k, v, tables = paged_cache(env, 1, t, gen)
    wk, wv, wtables = paged_cache(env, 1, t, gen)
    q = env.randn(t, H, D, gen=gen)
    gw = env.randn(H, D, gen=gen) * 0.05
    gb = env.randn(H, gen=gen)
    cu = torch.tensor([0, t], device=env.device, dtype=torch.int32)
    lens = torch.tensor([t], device=env.device, dtype=torch.int32)
    return (q, k, v, tables, wk, wv, wtables, cu, lens, D**-0.5, window, gw, gb)


def bench_loop_prefill(env: Env, ptable: PrefillTable, lengths, window: int, gen) -> None:
    la = kernel_modules()[1]
    for t in lengths:
        args = loop_inputs(env, t, window, gen)
        new_ms = env.timed(lambda: la.loop_attention(*args))
        old_ms = env.timed(lambda: la.loop_attention(*args, legacy_prefill=True))
        flops = attention_flops(0, t) + attention_flops(0, t, window)
        ptable.add("fused loop prefill", f"T={t} W={window}", flops, old_ms, new_ms)


def bench_prefill_variants(env: Env, ptable: PrefillTable, t: int, window: int, gen) -> None:
    """Tile configs (block_m, tile_n, warps, stages) of the prefill kernels at one length."""
    _, _, prefill, _, plan_prefill = kernel_modules()
    k, v, tables = paged_cache(env, 1, t, gen)
    q = env.randn(t, H, D, gen=gen)
    out = torch.empty_like(q)
    cu = torch.tensor([0, t], device=env.device, dtype=torch.int32)
    lens = torch.tensor([t], device=env.device, dtype=torch.int32)
    base = plan_prefill(q, k, tables, None)
    configs = [(128, 64, 8, 5), (128, 64, 8, 3), (128, 64, 8, 7), (64, 64, 4, 5), (64, 64, 4, 3), (64, 64, 8, 5)]
    for bm, tn, warps, stages in configs:
        plan = dataclasses.replace(base, block_m=bm, block_q=bm // (H // KVH), tile_n=tn,
                                   num_warps=warps, num_stages=stages)
        ms = env.timed(lambda: prefill.paged_prefill(plan, out, q, k, v, tables, cu, lens, D**-0.5, 0))
        ptable.add(f"  paged {bm}x{tn} w{warps} s{stages}", f"T={t}", attention_flops(0, t), None, ms)
    args = loop_inputs(env, t, window, gen)
    base = plan_prefill(q, k, tables, None, loop=True, window_block_size=BS)
    for bm, tn, warps, stages in [(128, 64, 8, 5), (128, 64, 8, 3), (64, 64, 8, 5)]:
        plan = dataclasses.replace(base, block_m=bm, block_q=bm // (H // KVH), tile_n=tn,
                                   num_warps=warps, num_stages=stages)
        ms = env.timed(lambda: prefill.loop_prefill(plan, out, *args))
        ptable.add(f"  loop {bm}x{tn} w{warps} s{stages}", f"T={t} W={window}",
                   attention_flops(0, t) + attention_flops(0, t, window), None, ms)


def bench_rows(env: Env, table: Table, rows, gen) -> None:
    for n in rows:
        x = env.randn(n, HIDDEN, gen=gen)
        r = env.randn(n, HIDDEN, gen=gen)
        w = env.randn(HIDDEN, gen=gen)
        row = n * HIDDEN * 2
        table.add("rms_norm", f"N={n} C={HIDDEN}", env.timed(lambda: ops.rms_norm(x, w, 1e-5)), 2 * row,
                  env.timed(lambda: reference.rms_norm(x, w, 1e-5)))
        table.add("add_rms_norm", f"N={n} C={HIDDEN}", env.timed(lambda: ops.add_rms_norm(x, r, w, 1e-5)), 4 * row,
                  env.timed(lambda: reference.add_rms_norm(x, r, w, 1e-5)))
        qx = env.randn(n, H, D, gen=gen)
        cos = env.randn(n, D, gen=gen)
        sin = env.randn(n, D, gen=gen)
        table.add("apply_rope", f"N={n} H={H}", env.timed(lambda: ops.apply_rope(qx, cos, sin)),
                  2 * qx.numel() * 2 + 2 * cos.numel() * 2, env.timed(lambda: reference.apply_rope(qx, cos, sin)))
        kc = torch.zeros(-(-n // BS) + 1, BS, KVH, D, device=env.device, dtype=env.dtype)
        vc = torch.zeros_like(kc)
        kn = env.randn(n, KVH, D, gen=gen)
        vn = env.randn(n, KVH, D, gen=gen)
        slots = torch.randperm(kc.shape[0] * BS, device=env.device, generator=gen)[:n]
        table.add("write_kv", f"N={n} KVH={KVH}", env.timed(lambda: ops.write_kv(kc, vc, kn, vn, slots)),
                  4 * kn.numel() * 2, env.timed(lambda: reference.write_kv(kc, vc, kn, vn, slots)))


def run_prefill(env: Env, gen, quick: bool, variants: bool) -> None:
    smoke = env.smoke
    window = 64 if not smoke else 16
    ptable = PrefillTable(f"Prefill attention, {H}/{KVH} heads, D {D}, {str(env.dtype).split('.')[-1]}, "
                          f"block {BS}: old = split-capable kernel (legacy_prefill), new = prefill kernel")
    lengths = [40, 70] if smoke else ([4096] if quick else [2048, 8192, 16384])
    bench_prefill(env, ptable, lengths, gen)
    bench_prefill(env, ptable, [lengths[-1]], gen, window=4096 if not smoke else 24)
    bench_prefill_chunks(env, ptable, *((2, 30, 40) if smoke else (1, 2048, 14336)), gen)
    bench_prefill_chunks(env, ptable, *((3, 4, 30) if smoke else (32, 16, 4096)), gen)
    bench_loop_prefill(env, ptable, lengths, window, gen)
    if variants:
        bench_prefill_variants(env, ptable, lengths[0] if smoke else lengths[-1], window, gen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    parser.add_argument("--prefill-only", action="store_true", help="only the prefill table (old vs new vs SDPA)")
    parser.add_argument("--prefill-variants", action="store_true", help="add a sweep of prefill tile configs")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one call each: checks the script runs")
    args = parser.parse_args()
    on_gpu = torch.cuda.is_available() and ops.triton_available()
    if args.smoke and not on_gpu and os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("--smoke without a GPU needs TRITON_INTERPRET=1 (Triton's interpreter)")
    if not on_gpu and not args.smoke:
        sys.exit("kernels_bench needs a CUDA device and triton (or --smoke)")
    # The interpreter has no bfloat16 arithmetic: smoke runs on the CPU in float32.
    env = Env("cuda" if on_gpu else "cpu", torch.bfloat16 if on_gpu else torch.float32, args.smoke)
    gen = torch.Generator(device=env.device).manual_seed(0)
    if on_gpu:
        props = torch.cuda.get_device_properties(0)
        print(f"{props.name}, {props.multi_processor_count} SMs; torch {torch.__version__}", flush=True)
    if args.prefill_only or args.prefill_variants:
        print(f"bf16 matmul {matmul_rate(env, gen) / 1e12:.0f} TFLOP/s (8192^3, random data)", flush=True)
        run_prefill(env, gen, args.quick, args.prefill_variants)
        return
    copy_bw = copy_bandwidth(env)
    print(f"copy bandwidth {copy_bw / 1e12:.2f} TB/s (read + write); "
          f"bf16 matmul {matmul_rate(env, gen) / 1e12:.0f} TFLOP/s", flush=True)
    table = Table(copy_bw)
    quick, smoke = args.quick, args.smoke
    if smoke:
        bench_loop_decode(env, table, [(2, 40)], 16, gen)
        bench_decode(env, table, [(2, 40)], gen)
        bench_decode_variants(env, table, 1, 40, gen)
        bench_rows(env, table, [3], gen)
    else:
        bench_loop_decode(env, table, [(1, 32768)] if quick else [(1, 32768), (1, 2048), (8, 32768), (32, 8192)],
                          64, gen)
        bench_decode(env, table, [(1, 32768), (32, 8192)] if quick else
                     [(1, 2048), (1, 32768), (1, 131072), (8, 32768), (32, 2048), (32, 32768)], gen)
        if not quick:
            bench_decode_variants(env, table, 1, 32768, gen)
        bench_rows(env, table, [1, 32] if quick else [1, 32, 8192], gen)
    run_prefill(env, gen, quick, variants=not quick)


if __name__ == "__main__":
    main()
