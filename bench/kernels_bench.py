"""Kernel benchmark: each Triton kernel against its plain-torch reference and, for attention,
against PyTorch SDPA on contiguous K/V, on IQuest-Coder-V1 shapes (40 query heads,
8 KV heads, head_dim 128, cache blocks of 16; hidden 5120).

Per row: median time (triton.testing.do_bench, L2 flushed between runs), the bytes the kernel
must move at least (each input read once, each output written once) over that time, that
rate as a share of the measured device copy bandwidth, and the speedup over the reference.
Attention rows with a compute floor also give TFLOP/s. Needs a CUDA device:

    python bench/kernels_bench.py            # every row
    python bench/kernels_bench.py --quick    # fewer shapes

loopls must be importable: `pip install -e .`, or a namespace folder with links (see
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys

import torch
import triton.testing

from loopls.kernels import ops, reference

H, KVH, D, BS, HIDDEN, W = 40, 8, 128, 16, 5120, 64
DT = torch.bfloat16
DEV = "cuda"


def timed(fn) -> float:
    """Median milliseconds of fn."""
    return triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median")


def copy_bandwidth() -> float:
    """Device-to-device copy of 2 GiB, bytes read + written per second."""
    src = torch.empty(2**30, dtype=torch.float16, device=DEV).normal_()
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src))
    return 2 * src.numel() * 2 / (ms * 1e-3)


def paged_cache(batch: int, ctx: int, gen: torch.Generator):
    """A bf16 paged cache holding `batch` sequences of `ctx` keys in shuffled blocks."""
    per_seq = -(-ctx // BS)
    nblocks = batch * per_seq
    k = torch.randn(nblocks, BS, KVH, D, device=DEV, dtype=DT, generator=gen)
    v = torch.randn(nblocks, BS, KVH, D, device=DEV, dtype=DT, generator=gen)
    tables = torch.randperm(nblocks, device=DEV, generator=gen).view(batch, per_seq).int()
    return k, v, tables


class Table:
    def __init__(self, copy_bw: float) -> None:
        self.copy_bw = copy_bw
        self.rows: list[tuple] = []
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


def bench_decode(table: Table, shapes, gen) -> None:
    for batch, ctx in shapes:
        k, v, tables = paged_cache(batch, ctx, gen)
        q = torch.randn(batch, H, D, device=DEV, dtype=DT, generator=gen)
        cu = torch.arange(batch + 1, device=DEV, dtype=torch.int32)
        lens = torch.full((batch,), ctx, device=DEV, dtype=torch.int32)
        args = (q, k, v, tables, cu, lens, D**-0.5)
        splits = ops.attention_splits(batch, KVH, ctx, DEV)
        ws = torch.empty(ops.attention_workspace_numel(batch, H, D, splits), device=DEV)
        out = torch.empty_like(q)
        ms = timed(lambda: ops.paged_attention(*args, out=out, num_splits=splits, workspace=ws))
        ref_ms = timed(lambda: reference.paged_attention(*args)) if batch * ctx <= 64 * 1024 else None
        # peer: SDPA on contiguous K/V, the G heads of a KV head folded into the query length
        kc = k[tables.long()].reshape(batch, -1, KVH, D)[:, :ctx].transpose(1, 2).contiguous()
        vc = v[tables.long()].reshape(batch, -1, KVH, D)[:, :ctx].transpose(1, 2).contiguous()
        qf = q.view(batch, KVH, H // KVH, D)
        sdpa = torch.nn.functional.scaled_dot_product_attention
        peer_ms = timed(lambda: sdpa(qf, kc, vc, scale=D**-0.5))
        nbytes = 2 * batch * ctx * KVH * D * 2
        table.add(f"paged decode (splits {splits})", f"B={batch} ctx={ctx}", ms, nbytes, ref_ms,
                  peer="sdpa", peer_ms=peer_ms)


def bench_decode_variants(table: Table, batch: int, ctx: int, gen) -> None:
    """Tile shapes of the decode kernel at one size (the plan picks tile 64, 4 warps)."""
    import dataclasses

    from loopls.kernels import paged_attention as pa
    from loopls.kernels.launch import plan_attention

    k, v, tables = paged_cache(batch, ctx, gen)
    q = torch.randn(batch, H, D, device=DEV, dtype=DT, generator=gen)
    cu = torch.arange(batch + 1, device=DEV, dtype=torch.int32)
    lens = torch.full((batch,), ctx, device=DEV, dtype=torch.int32)
    out = torch.empty_like(q)
    base = plan_attention(q, k, tables, ctx, None, None)
    for tile_n, warps, stages in [(32, 4, 2), (64, 4, 3), (64, 8, 2), (128, 4, 2), (128, 8, 2)]:
        plan = dataclasses.replace(base, tile_n=tile_n, num_warps=warps, num_stages=stages)
        ms = timed(lambda: pa._launch(plan, out, q, k, v, tables, cu, lens, D**-0.5, 0))
        table.add(f"  variant tile {tile_n} warps {warps} st {stages}", f"B={batch} ctx={ctx}", ms,
                  2 * batch * ctx * KVH * D * 2)


def bench_loop_decode(table: Table, shapes, gen) -> None:
    for batch, ctx in shapes:
        k, v, tables = paged_cache(batch, ctx, gen)
        wk, wv, wtables = paged_cache(batch, ctx, gen)  # the window cache (only W keys are read)
        q = torch.randn(batch, H, D, device=DEV, dtype=DT, generator=gen)
        gw = torch.randn(H, D, device=DEV, dtype=DT, generator=gen) * 0.05
        gb = torch.randn(H, device=DEV, dtype=DT, generator=gen)
        cu = torch.arange(batch + 1, device=DEV, dtype=torch.int32)
        lens = torch.full((batch,), ctx, device=DEV, dtype=torch.int32)
        args = (q, k, v, tables, wk, wv, wtables, cu, lens, D**-0.5, W, gw, gb)
        splits = ops.attention_splits(batch, KVH, ctx, DEV)
        ws = torch.empty(ops.attention_workspace_numel(batch, H, D, splits, loop=True), device=DEV)
        out = torch.empty_like(q)
        ms = timed(lambda: ops.loop_attention(*args, out=out, num_splits=splits, workspace=ws))
        ref_ms = timed(lambda: reference.loop_attention(*args))
        nbytes = 2 * batch * (ctx + W) * KVH * D * 2
        table.add(f"fused loop decode (splits {splits})", f"B={batch} ctx={ctx} W={W}", ms, nbytes, ref_ms)


def bench_prefill(table: Table, lengths, gen, loop: bool) -> None:
    for t in lengths:
        k, v, tables = paged_cache(1, t, gen)
        q = torch.randn(t, H, D, device=DEV, dtype=DT, generator=gen)
        cu = torch.tensor([0, t], device=DEV, dtype=torch.int32)
        lens = torch.tensor([t], device=DEV, dtype=torch.int32)
        flops = 4 * H * D * t * (t + 1) / 2  # causal: QK^T and PV over the lower triangle
        if loop:
            wk, wv, wtables = paged_cache(1, t, gen)
            gw = torch.randn(H, D, device=DEV, dtype=DT, generator=gen) * 0.05
            gb = torch.randn(H, device=DEV, dtype=DT, generator=gen)
            args = (q, k, v, tables, wk, wv, wtables, cu, lens, D**-0.5, W, gw, gb)
            ms = timed(lambda: ops.loop_attention(*args))
            ref_ms = timed(lambda: reference.loop_attention(*args)) if t <= 8192 else None
            flops += 4 * H * D * t * W
            table.add("fused loop prefill", f"T={t} W={W}", ms, 3 * t * KVH * D * 2 * 2, ref_ms, flops)
            continue
        args = (q, k, v, tables, cu, lens, D**-0.5)
        ms = timed(lambda: ops.paged_attention(*args))
        ref_ms = timed(lambda: reference.paged_attention(*args)) if t <= 8192 else None
        # peer: SDPA, causal, on contiguous K/V expanded to all heads (outside the timing)
        kc = k[tables.long()].reshape(1, -1, KVH, D)[:, :t].transpose(1, 2).repeat_interleave(H // KVH, 1)
        vc = v[tables.long()].reshape(1, -1, KVH, D)[:, :t].transpose(1, 2).repeat_interleave(H // KVH, 1)
        qc = q.transpose(0, 1)[None]
        sdpa = torch.nn.functional.scaled_dot_product_attention
        peer_ms = timed(lambda: sdpa(qc, kc, vc, is_causal=True, scale=D**-0.5))
        table.add("paged prefill", f"T={t}", ms, 2 * t * (H + KVH) * D * 2, ref_ms, flops,
                  peer="sdpa", peer_ms=peer_ms)


def bench_rows(table: Table, rows, gen) -> None:
    for n in rows:
        x = torch.randn(n, HIDDEN, device=DEV, dtype=DT, generator=gen)
        r = torch.randn(n, HIDDEN, device=DEV, dtype=DT, generator=gen)
        w = torch.randn(HIDDEN, device=DEV, dtype=DT, generator=gen)
        row = n * HIDDEN * 2
        table.add("rms_norm", f"N={n} C={HIDDEN}", timed(lambda: ops.rms_norm(x, w, 1e-5)), 2 * row,
                  timed(lambda: reference.rms_norm(x, w, 1e-5)))
        table.add("add_rms_norm", f"N={n} C={HIDDEN}", timed(lambda: ops.add_rms_norm(x, r, w, 1e-5)), 4 * row,
                  timed(lambda: reference.add_rms_norm(x, r, w, 1e-5)))
        qx = torch.randn(n, H, D, device=DEV, dtype=DT, generator=gen)
        cos = torch.randn(n, D, device=DEV, dtype=DT, generator=gen)
        sin = torch.randn(n, D, device=DEV, dtype=DT, generator=gen)
        table.add("apply_rope", f"N={n} H={H}", timed(lambda: ops.apply_rope(qx, cos, sin)),
                  2 * qx.numel() * 2 + 2 * cos.numel() * 2, timed(lambda: reference.apply_rope(qx, cos, sin)))
        kc = torch.zeros(-(-n // BS) + 1, BS, KVH, D, device=DEV, dtype=DT)
        vc = torch.zeros_like(kc)
        kn = torch.randn(n, KVH, D, device=DEV, dtype=DT, generator=gen)
        vn = torch.randn(n, KVH, D, device=DEV, dtype=DT, generator=gen)
        slots = torch.randperm(kc.shape[0] * BS, device=DEV, generator=gen)[:n]
        table.add("write_kv", f"N={n} KVH={KVH}", timed(lambda: ops.write_kv(kc, vc, kn, vn, slots)),
                  4 * kn.numel() * 2, timed(lambda: reference.write_kv(kc, vc, kn, vn, slots)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    args = parser.parse_args()
    if not torch.cuda.is_available() or not ops.triton_available():
        sys.exit("kernels_bench needs a CUDA device and triton")
    gen = torch.Generator(device=DEV).manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    copy_bw = copy_bandwidth()
    print(f"{props.name}, {props.multi_processor_count} SMs; torch {torch.__version__}; "
          f"copy bandwidth {copy_bw / 1e12:.2f} TB/s (read + write)", flush=True)
    table = Table(copy_bw)
    quick = args.quick
    bench_loop_decode(table, [(1, 32768)] if quick else [(1, 32768), (1, 2048), (8, 32768), (32, 8192)], gen)
    bench_decode(table, [(1, 32768), (32, 8192)] if quick else
                 [(1, 2048), (1, 32768), (1, 131072), (8, 32768), (32, 2048), (32, 32768)], gen)
    if not quick:
        bench_decode_variants(table, 1, 32768, gen)
    bench_prefill(table, [4096] if quick else [2048, 8192, 16384], gen, loop=False)
    bench_prefill(table, [4096] if quick else [2048, 16384], gen, loop=True)
    bench_rows(table, [1, 32] if quick else [1, 32, 8192], gen)


if __name__ == "__main__":
    main()
