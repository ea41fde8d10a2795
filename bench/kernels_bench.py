"""Kernel benchmark: each Triton kernel against its plain-torch reference and, for attention,
against PyTorch SDPA, on IQuest-Coder-V1 shapes (40 query heads, 8 KV heads, head_dim 128,
cache blocks of 16; hidden 5120).

Per row of the first table: median time, the bytes the kernel must move at least (each input
read once, each output written once) over that time, that rate as a share of the measured
device copy bandwidth, and the speedup over the reference. The prefill tables follow
(prefill_bench.py): prefill kernel vs the kernel that served prefill before it vs SDPA, in
TFLOP/s, and the prefill kernels' error against the fp32 reference.

    python bench/kernels_bench.py                     # every row
    python bench/kernels_bench.py --quick             # fewer shapes
    python bench/kernels_bench.py --prefill-only      # the prefill tables alone (T = 4K..128K)
    python bench/kernels_bench.py --prefill-only --prefill-variants  # ... plus tile configs
    TRITON_INTERPRET=1 python bench/kernels_bench.py --smoke   # tiny shapes, any machine

`--smoke` runs every section on tiny shapes with one call each (on the CPU through Triton's
interpreter when there is no GPU): a check that the script itself runs, not a measurement.
The script exits with status 1 when a prefill kernel's output is out of its error bound.
loopls must be importable: `pip install -e .`, or a namespace folder with links (see
docs/benchmarks.md); only loopls.kernels is imported.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import torch
from kernel_env import IQUEST, Env, copy_bandwidth, matmul_rate
from kernel_env import paged_cache as _paged_cache
from prefill_bench import run_prefill

from loopls.kernels import ops, reference

H, KVH, D, BS, HIDDEN = IQUEST.heads, IQUEST.kv_heads, IQUEST.head_dim, IQUEST.block_size, 5120


def kernel_modules():
    """The Triton kernel modules, called directly so that CPU tensors run them too (smoke)."""
    from loopls.kernels import paged_attention
    from loopls.kernels.launch import plan_attention

    return paged_attention, plan_attention


def paged_cache(env: Env, batch: int, ctx: int, gen: torch.Generator):
    return _paged_cache(env, IQUEST, batch, ctx, gen)


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
    pa, plan_attention = kernel_modules()
    k, v, tables = paged_cache(env, batch, ctx, gen)
    q = env.randn(batch, H, D, gen=gen)
    cu = torch.arange(batch + 1, device=env.device, dtype=torch.int32)
    lens = torch.full((batch,), ctx, device=env.device, dtype=torch.int32)
    out = torch.empty_like(q)
    base = plan_attention(q, k, tables, ctx, None, None)
    variants = [(32, 4, 2), (64, 4, 3), (64, 8, 2), (128, 4, 2), (128, 8, 2)]
    for tile_n, warps, stages in variants[1:2] if env.smoke else variants:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    parser.add_argument("--prefill-only", action="store_true", help="only the prefill tables")
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
        import triton

        props = torch.cuda.get_device_properties(0)
        print(f"{props.name}, {props.multi_processor_count} SMs; torch {torch.__version__}, "
              f"triton {triton.__version__}", flush=True)
    if not args.prefill_only:
        copy_bw = copy_bandwidth(env)
        print(f"copy bandwidth {copy_bw / 1e12:.2f} TB/s (read + write); "
              f"bf16 matmul {matmul_rate(env, gen) / 1e12:.0f} TFLOP/s", flush=True)
        table = Table(copy_bw)
        if args.smoke:
            bench_loop_decode(env, table, [(2, 40)], 16, gen)
            bench_decode(env, table, [(2, 40)], gen)
            bench_decode_variants(env, table, 1, 40, gen)
            bench_rows(env, table, [3], gen)
        else:
            quick = args.quick
            bench_loop_decode(env, table, [(1, 32768)] if quick else [(1, 32768), (1, 2048), (8, 32768), (32, 8192)],
                              64, gen)
            bench_decode(env, table, [(1, 32768), (32, 8192)] if quick else
                         [(1, 2048), (1, 32768), (1, 131072), (8, 32768), (32, 2048), (32, 32768)], gen)
            if not quick:
                bench_decode_variants(env, table, 1, 32768, gen)
            bench_rows(env, table, [1, 32] if quick else [1, 32, 8192], gen)
    ok = run_prefill(env, gen, args.quick, args.prefill_variants or args.smoke)
    if not ok:
        sys.exit("a prefill kernel is out of its error bound (see the correctness table)")


if __name__ == "__main__":
    main()
