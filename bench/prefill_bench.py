"""Prefill attention rows of bench/kernels_bench.py (`--prefill-only` runs them alone).

Three tables, one sequence of T new tokens from position 0 unless a row says otherwise:
- paged causal prefill: the prefill kernel ("new", what ops.paged_attention runs for prefill on
  CUDA), the split-capable kernel that served prefill before it ("old", `legacy_prefill`), and
  PyTorch SDPA with its FlashAttention-2 and cuDNN backends on contiguous K/V repeated to all
  query heads (built outside the timing), in TFLOP/s of the attention a causal prefill must
  compute and as a share of the measured bf16 matmul rate;
- fused LoopAttention prefill (window W): new, old, and a torch composition (SDPA flash for the
  global part, SDPA on query blocks of W against their 2W keys with a band mask for the local
  part, the gate in torch), again on contiguous K/V prepared outside the timing;
- correctness: relative error ||out - ref|| / ||ref|| against the fp32 plain-torch reference
  (kernels/reference.py) on the same inputs, bound as in tests/kernels, and (CUDA) whether
  ops.paged_attention / ops.loop_attention return exactly the prefill kernels' output.
"""

from __future__ import annotations

import dataclasses

import torch
from kernel_env import IQUEST, Env, Shape, paged_cache, matmul_rate

from loopls.kernels import ops, reference

SMOKE = Shape(8, 2, 64, 16)  # small enough for Triton's interpreter
BOUNDS = {torch.bfloat16: 1.6e-2, torch.float16: 2e-3, torch.float32: 1e-5}  # as tests/kernels


def causal_keys(first: int, last: int, window: int = 0) -> int:
    """Keys seen by the queries at positions first..last-1 (causal, or the last W keys each)."""
    def upto(n: int) -> int:  # sum of min(p + 1, W) for p < n
        if not window or n <= window:
            return n * (n + 1) // 2
        return window * (window + 1) // 2 + (n - window) * window

    return upto(last) - upto(first)


def kernels():
    from loopls.kernels import loop_attention, paged_attention, prefill
    from loopls.kernels.launch import plan_prefill

    return paged_attention, loop_attention, prefill, plan_prefill


def fp32(x):
    return x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


@dataclasses.dataclass
class Run:
    env: Env
    shape: Shape
    gen: torch.Generator
    matmul: float  # FLOP/s

    def describe(self) -> str:
        s = self.shape
        return (f"{s.heads}/{s.kv_heads} heads, D {s.head_dim}, block {s.block_size}, "
                f"{str(self.env.dtype).split('.')[-1]}")

    def flops(self, keys: int) -> float:
        return 4 * self.shape.heads * self.shape.head_dim * keys

    def tf(self, keys: int, ms: float | None) -> str:
        return f"{self.flops(keys) / (ms * 1e-3) / 1e12:>9.1f}" if ms else f"{'-':>9}"

    def pct(self, keys: int, ms: float) -> str:
        return f"{100 * self.flops(keys) / (ms * 1e-3) / self.matmul:>6.0f}%"

    def one_seq(self, t: int, prefix: int = 0, batch: int = 1):
        """Queries of `batch` sequences each adding t tokens to `prefix` cached ones."""
        s = self.shape
        k, v, tables = paged_cache(self.env, s, batch, prefix + t, self.gen)
        q = self.env.randn(batch * t, s.heads, s.head_dim, gen=self.gen)
        cu = torch.arange(0, batch * t + 1, t, device=self.env.device, dtype=torch.int32)
        lens = torch.full((batch,), prefix + t, device=self.env.device, dtype=torch.int32)
        return q, k, v, tables, cu, lens, s.head_dim**-0.5

    def loop_args(self, t: int, window: int):
        q, k, v, tables, cu, lens, scale = self.one_seq(t)
        wk, wv, wtables = paged_cache(self.env, self.shape, 1, t, self.gen)
        gw = self.env.randn(self.shape.heads, self.shape.head_dim, gen=self.gen) * 0.05
        gb = self.env.randn(self.shape.heads, gen=self.gen)
        return (q, k, v, tables, wk, wv, wtables, cu, lens, scale, window, gw, gb)

    def contiguous(self, k: torch.Tensor, tables: torch.Tensor, t: int) -> torch.Tensor:
        """[1, H, T, D]: one sequence's keys (or values) in order, repeated to every query head."""
        s = self.shape
        kc = k[tables.long()].reshape(1, -1, s.kv_heads, s.head_dim)[:, :t].transpose(1, 2)
        return kc.repeat_interleave(s.group, 1).contiguous()


def sdpa_backends(env: Env) -> dict[str, object]:
    """SDPA backends to time: FlashAttention-2 and cuDNN on CUDA (each forced), the default else."""
    if env.device != "cuda":
        return {"sdpa": None}
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}


def sdpa(backend, q, k, v, scale, **kw) -> torch.Tensor:
    if backend is None:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale, **kw)
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel(backend):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale, **kw)


def try_sdpa(backend, q, k, v, scale) -> bool:
    try:
        sdpa(backend, q, k, v, scale, is_causal=True)
        return True
    except RuntimeError:  # the backend does not take these inputs on this card
        return False


def paged_table(run: Run, lengths: list[int], window_row: tuple[int, int], chunk_rows) -> None:
    pa = kernels()[0]
    peers = sdpa_backends(run.env)
    print(f"\nPaged causal prefill, {run.describe()}; TF/s of the causal "
          f"attention; % mm = share of the bf16 matmul rate; old = split-capable kernel (legacy_prefill)", flush=True)
    head = f"{'row':<30}{'new ms':>10}{'new TF/s':>9}{'% mm':>7}{'old TF/s':>9}{'new/old':>8}"
    for name in peers:
        head += f"{name + ' TF/s':>11}{'new/' + name:>11}"
    print(head + f"{'err vs ' + next(iter(peers)):>14}", flush=True)
    for t in lengths:
        args = run.one_seq(t)
        keys = causal_keys(0, t)
        new_ms = run.env.timed(lambda: pa.paged_attention(*args))
        old_ms = run.env.timed(lambda: pa.paged_attention(*args, legacy_prefill=True))
        q, k, v, tables = args[:4]
        qc, kc, vc = q.transpose(0, 1)[None], run.contiguous(k, tables, t), run.contiguous(v, tables, t)
        line = f"{f'causal T={t}':<30}{new_ms:>10.3f}{run.tf(keys, new_ms)}{run.pct(keys, new_ms)}"
        line += f"{run.tf(keys, old_ms)}{old_ms / new_ms:>7.2f}x"
        err = None
        for backend in peers.values():
            if not try_sdpa(backend, qc, kc, vc, args[6]):
                line += f"{'n/a':>11}{'':>11}"
                continue
            ms = run.env.timed(lambda: sdpa(backend, qc, kc, vc, args[6], is_causal=True))
            line += f"{run.tf(keys, ms):>11}{ms / new_ms:>10.2f}x"
            if err is None:
                err = rel_err(pa.paged_attention(*args), sdpa(backend, qc, kc, vc, args[6], is_causal=True)[0]
                              .transpose(0, 1))
        print(line + (f"{err:>14.2e}" if err is not None else ""), flush=True)
        del args, q, k, v, qc, kc, vc
    t, w = window_row
    args = run.one_seq(t)
    keys = causal_keys(0, t, w)
    new_ms = run.env.timed(lambda: pa.paged_attention(*args, w))
    old_ms = run.env.timed(lambda: pa.paged_attention(*args, w, legacy_prefill=True))
    print(f"{f'window T={t} W={w}':<30}{new_ms:>10.3f}{run.tf(keys, new_ms)}{run.pct(keys, new_ms)}"
          f"{run.tf(keys, old_ms)}{old_ms / new_ms:>7.2f}x", flush=True)
    for batch, t, prefix in chunk_rows:
        args = run.one_seq(t, prefix, batch)
        keys = batch * causal_keys(prefix, prefix + t)
        new_ms = run.env.timed(lambda: pa.paged_attention(*args))
        old_ms = run.env.timed(lambda: pa.paged_attention(*args, legacy_prefill=True))
        print(f"{f'B={batch} T={t} +{prefix} cached':<30}{new_ms:>10.3f}{run.tf(keys, new_ms)}"
              f"{run.pct(keys, new_ms)}{run.tf(keys, old_ms)}{old_ms / new_ms:>7.2f}x", flush=True)


def band_queries(q: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Sliding-window attention of [1, H, T, D] queries as one SDPA call: the queries in blocks
    of W ([nb, H, W, D]), each block against the 2W keys that can hold its windows (windows_of)
    under a band mask ([nb, 1, W, 2W]); T padded to tp = nb * W."""
    _, h, t, d = q.shape
    nb = -(-t // window)
    tp = nb * window
    qb = torch.nn.functional.pad(q[0], (0, 0, 0, tp - t)).view(h, nb, window, d).transpose(0, 1)
    i = torch.arange(window, device=q.device)[:, None]
    j = torch.arange(2 * window, device=q.device)[None, :]
    band = (j > i) & (j <= i + window)  # key j of block b sits at position (b - 1) * W + j
    mask = band[None].repeat(nb, 1, 1)
    mask[0, :, :window] = False  # block 0: positions < 0
    return qb, mask[:, None], tp


def windows_of(x: torch.Tensor, window: int, tp: int) -> torch.Tensor:
    """[1, H, T, D] -> [nb, H, 2W, D]: the keys (or values) of each query block's band."""
    _, h, t, d = x.shape
    padded = torch.nn.functional.pad(x[0], (0, 0, window, tp - t))  # [H, W + tp, D]
    return padded.unfold(1, 2 * window, window).permute(1, 0, 3, 2).contiguous()


def loop_table(run: Run, lengths: list[int], window: int) -> None:
    la = kernels()[1]
    backend = next(iter(sdpa_backends(run.env).values()))
    print(f"\nFused LoopAttention prefill, W={window}: TF/s of the global causal plus the window attention; "
          f"peer = SDPA (flash) global + SDPA on W-query blocks x 2W keys (band mask) + torch gate", flush=True)
    print(f"{'row':<30}{'new ms':>10}{'new TF/s':>9}{'% mm':>7}{'old TF/s':>9}{'new/old':>8}"
          f"{'peer ms':>10}{'peer TF/s':>10}{'new/peer':>9}{'err vs peer':>13}", flush=True)
    for t in lengths:
        args = run.loop_args(t, window)
        q, k, v, tables, wk, wv, wtables, _, _, scale, _, gw, gb = args
        keys = causal_keys(0, t) + causal_keys(0, t, window)
        new_ms = run.env.timed(lambda: la.loop_attention(*args))
        old_ms = run.env.timed(lambda: la.loop_attention(*args, legacy_prefill=True))
        qc = q.transpose(0, 1)[None]
        kc, vc = run.contiguous(k, tables, t), run.contiguous(v, tables, t)
        qb, mask, tp = band_queries(qc, window)
        kw = windows_of(run.contiguous(wk, wtables, t), window, tp)
        vw = windows_of(run.contiguous(wv, wtables, t), window, tp)

        def peer() -> torch.Tensor:
            glob = sdpa(backend, qc, kc, vc, scale, is_causal=True)
            local = sdpa(None, qb, kw, vw, scale, attn_mask=mask)  # masks: flash does not take them
            local = local.transpose(0, 1).reshape(1, run.shape.heads, tp, -1)[:, :, :t]
            g = torch.sigmoid(torch.einsum("bhtd,hd->bht", qc, gw) + gb[:, None]).unsqueeze(-1)
            return g * glob + (1 - g) * local

        peer_ms = run.env.timed(peer)
        err = rel_err(la.loop_attention(*args), peer()[0].transpose(0, 1))
        print(f"{f'loop T={t}':<30}{new_ms:>10.3f}{run.tf(keys, new_ms)}{run.pct(keys, new_ms)}"
              f"{run.tf(keys, old_ms)}{old_ms / new_ms:>7.2f}x{peer_ms:>10.3f}{run.tf(keys, peer_ms):>10}"
              f"{peer_ms / new_ms:>8.2f}x{err:>13.2e}", flush=True)
        del args, q, k, v, wk, wv, qc, kc, vc, qb, kw, vw


def correctness_table(run: Run, t: int, window: int, loop_window: int) -> bool:
    """Relative errors against the fp32 reference; True when every new-kernel row is in bound."""
    pa, la = kernels()[:2]
    bound = BOUNDS[run.env.dtype]
    print(f"\nCorrectness at T={t}, {run.describe()}: relative error vs the fp32 reference (bound {bound:.1e}, as tests/kernels)",
          flush=True)
    print(f"{'case':<36}{'new err':>11}{'old err':>11}{'verdict':>9}", flush=True)
    ok = True

    def row(case: str, new: torch.Tensor, old: torch.Tensor, ref: torch.Tensor) -> None:
        nonlocal ok
        e_new, e_old = rel_err(new, ref), rel_err(old, ref)
        good = bool(torch.isfinite(new).all()) and e_new <= bound
        ok &= good
        print(f"{case:<36}{e_new:>11.2e}{e_old:>11.2e}{'ok' if good else 'FAIL':>9}", flush=True)

    third = t // 3
    for case, w, prefix, batch, q_len in (
        ("causal", 0, 0, 1, t), (f"window W={window}", window, 0, 1, t),
        (f"chunk T={t - third} after {third} cached", 0, third, 1, t - third),
        (f"3 chunks of {third // 4} after {t - third // 4}", 0, t - third // 4, 3, third // 4),
    ):
        args = run.one_seq(q_len, prefix, batch)
        ref = reference.paged_attention(*[fp32(a) for a in args], w)
        row(f"paged {case}", pa.paged_attention(*args, w), pa.paged_attention(*args, w, legacy_prefill=True), ref)
    args = run.loop_args(t, loop_window)
    ref = reference.loop_attention(*[fp32(a) for a in args])
    new = la.loop_attention(*args)
    row(f"loop W={loop_window}", new, la.loop_attention(*args, legacy_prefill=True), ref)
    if run.env.device == "cuda":
        # The engine's path: ops.py dispatches CUDA prefill calls to the prefill kernels.
        paged = run.one_seq(t)
        same = torch.equal(ops.paged_attention(*paged), pa.paged_attention(*paged))
        same_loop = torch.equal(ops.loop_attention(*args), new)
        ok &= same and same_loop
        print(f"ops.paged_attention == prefill kernel: {same}; ops.loop_attention == fused loop prefill kernel: "
              f"{same_loop}", flush=True)
    return ok


def variants_table(run: Run, t: int, window: int) -> None:
    """Tile configs (block_m, tile_n, warps, stages) of the prefill kernels at one length."""
    _, _, prefill, plan_prefill = kernels()
    smoke = run.env.smoke
    print(f"\nPrefill tile configs at T={t}", flush=True)
    args = run.one_seq(t)
    q, k, v, tables, cu, lens, scale = args
    out = torch.empty_like(q)
    base = plan_prefill(q, k, tables, None)
    # The default first; then tiles that compile for sm_90a without register spills (Triton
    # 3.9, ptxas -v: 128x32 and 64x64 at 8 warps; the default 128x64 spills 264 bytes a thread
    # in the paged kernel and ~1 KB in the Loop kernel), 64x64 at 4 warps, and one other depth.
    configs = [(128, 64, 8, 5)] if smoke else [
        (128, 64, 8, 5), (128, 32, 8, 5), (64, 64, 8, 5), (64, 64, 4, 5), (128, 64, 8, 3), (128, 128, 8, 3),
    ]
    for bm, tn, warps, stages in configs:
        plan = dataclasses.replace(base, block_m=bm, block_q=bm // run.shape.group, tile_n=tn,
                                   num_warps=warps, num_stages=stages)
        ms = run.env.timed(lambda: prefill.paged_prefill(plan, out, q, k, v, tables, cu, lens, scale, 0))
        print(f"  paged {bm}x{tn} w{warps} s{stages}{'':<8}{ms:>10.3f}{run.tf(causal_keys(0, t), ms)}", flush=True)
    largs = run.loop_args(t, window)
    base = plan_prefill(q, k, tables, None, loop=True, window_block_size=run.shape.block_size)
    keys = causal_keys(0, t) + causal_keys(0, t, window)
    for bm, tn, warps, stages in configs[:1] if smoke else [(128, 64, 8, 5), (64, 64, 8, 5), (128, 32, 8, 5),
                                                            (64, 64, 4, 5)]:
        plan = dataclasses.replace(base, block_m=bm, block_q=bm // run.shape.group, tile_n=tn,
                                   num_warps=warps, num_stages=stages)
        ms = run.env.timed(lambda: prefill.loop_prefill(plan, out, *largs))
        print(f"  loop {bm}x{tn} w{warps} s{stages}{'':<9}{ms:>10.3f}{run.tf(keys, ms)}", flush=True)


def run_prefill(env: Env, gen: torch.Generator, quick: bool, variants: bool) -> bool:
    """Every prefill table; False when a correctness row is out of bound."""
    smoke = env.smoke
    run = Run(env, SMOKE if smoke else IQUEST, gen, matmul_rate(env, gen))
    print(f"bf16 matmul {run.matmul / 1e12:.0f} TFLOP/s (8192^3, random data)" if not smoke else
          f"matmul {run.matmul / 1e12:.3f} TFLOP/s (smoke)", flush=True)
    if smoke:
        lengths, window_row, chunks, loop_w = [70], (70, 24), [(3, 4, 30)], 16
    else:
        lengths = [4096, 16384] if quick else [4096, 16384, 32768, 131072]
        window_row, chunks, loop_w = (16384, 4096), [(1, 2048, 14336), (32, 16, 4096)], 64
    ok = correctness_table(run, 70 if smoke else 4096, 24 if smoke else 1000, loop_w)
    paged_table(run, lengths, window_row, chunks)
    loop_table(run, lengths, loop_w)
    if variants:
        variants_table(run, 70 if smoke else 16384, loop_w)
    return ok
