"""Decode GEMMs on one GPU: cuBLAS against every Triton skinny-GEMM config (kernels/skinny_gemm.py).

For the 14B / 40B-Loop decoder shapes (hidden 5120, intermediate 27648, 40 heads, 8 KV heads, vocabulary 76800)
at TP=1 and TP=2 widths, x [rows, K] @ w [N, K].T in bf16 for rows 1, 8 and 32: microseconds per
call and GB/s of weight read, `--calls` calls back to back in one CUDA graph over enough copies
of the weight that they stream from memory as in a decode step. "gated" rows are an MLP's
gate and up with the activation (cuBLAS: two GEMMs and torch's silu and multiply; "cuBLAS
one" column: ONE GEMM over gate and up side by side, then the fused SiLU x up kernel, as the
engine runs them on GPUs). For plain products the "cuBLAS one" column is cuBLASLt
(torch.addmm with a zero bias). Every
Triton result is first checked against torch (relative error printed). Then what DecodeGemm
(kernels/decode_gemm.py) picks with its own timing, for the same shapes.

    python bench/decode_gemm_bench.py [--rows 1,8,32] [--calls 28]
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from kernel_env import graph_us

SHAPES = {  # name -> (N, K) of a decoder GEMM
    "qkv tp1": (7168, 5120), "o tp1": (5120, 5120), "gate tp1": (27648, 5120), "down tp1": (5120, 27648),
    "qkv tp2": (3584, 5120), "o tp2": (5120, 2560), "gate tp2": (13824, 5120), "down tp2": (5120, 13824),
    "head tp1": (76800, 5120), "head tp2": (38400, 5120),  # the LM head (vocabulary-parallel at TP=2)
}
GATED = ("gate tp1", "gate tp2")


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1,8,32")
    ap.add_argument("--calls", type=int, default=28)
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma list of: " + ", ".join(SHAPES))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("decode_gemm_bench needs a CUDA device")
    from loopls.kernels import skinny_gemm as sk
    from loopls.kernels.decode_gemm import DecodeGemm

    device, dtype = torch.device("cuda"), torch.bfloat16
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, bf16, {args.calls} calls per graph", flush=True)
    widest = max(n for n, _ in SHAPES.values())
    workspace = sk.Workspace.create(device, sk.MAX_ROWS, widest, max(c.split_k for c in sk.CONFIGS))
    chooser = DecodeGemm(device, widest)
    rows_list = [int(r) for r in args.rows.split(",")]
    print("\n| shape | N x K | rows | cuBLAS | cuBLAS one (pair / Lt) | " + " | ".join(map(str, sk.CONFIGS)) + " | max rel err |")
    print("|---|---|---|---|---|" + "---|" * len(sk.CONFIGS) + "---|")
    for name in args.shapes.split(","):
        n, k = SHAPES[name]
        kinds = ("linear", "gated") if name in GATED else ("linear",)
        for kind in kinds:
            nbytes = n * k * 2 * (2 if kind == "gated" else 1)
            copies = max(2, -(-(256 << 20) // nbytes))
            if kind == "gated":  # gate and up side by side, as the loaders place them
                pairs = [torch.randn(2 * n, k, device=device, dtype=dtype) * k**-0.5 for _ in range(copies)]
                ws, ups = [p[:n] for p in pairs], [p[n:] for p in pairs]
            else:
                ws = [torch.randn(n, k, device=device, dtype=dtype) * k**-0.5 for _ in range(copies)]
                pairs, ups = None, None
            bias = torch.zeros(n, device=device, dtype=dtype)
            for rows in rows_list:
                x = torch.randn(rows, k, device=device, dtype=dtype)
                out = torch.empty(rows, n, device=device, dtype=dtype)
                if kind == "gated":
                    ref = F.silu(F.linear(x.float(), ws[0].float())) * F.linear(x.float(), ups[0].float())
                    base = graph_us(lambda i: F.silu(F.linear(x, ws[i % copies])) * F.linear(x, ups[i % copies]), args.calls)
                    one = graph_us(lambda i: sk.silu_mul(F.linear(x, pairs[i % copies])), args.calls)
                    worst = rel_err(sk.silu_mul(F.linear(x, pairs[0])), ref)
                else:
                    ref = F.linear(x.float(), ws[0].float())
                    base = graph_us(lambda i: torch.mm(x, ws[i % copies].t(), out=out), args.calls)
                    one = graph_us(lambda i: torch.addmm(bias, x, ws[i % copies].t(), out=out), args.calls)
                    worst = rel_err(torch.addmm(bias, x, ws[0].t()), ref)
                cells = [f"{one:.1f} ({nbytes / one / 1e3:.0f})"]
                for config in sk.CONFIGS:
                    if kind == "gated" and config.split_k != 1:
                        cells.append("—")
                        continue
                    if kind == "gated":
                        got = sk.skinny_gemm(x, ws[0], config, up=ups[0])
                        us = graph_us(lambda i, c=config: sk.skinny_gemm(x, ws[i % copies], c, up=ups[i % copies]), args.calls)
                    else:
                        got = sk.skinny_gemm(x, ws[0], config, workspace=workspace)
                        us = graph_us(lambda i, c=config: sk.skinny_gemm(x, ws[i % copies], c, out=out, workspace=workspace),
                                      args.calls)
                    worst = max(worst, rel_err(got, ref))
                    cells.append(f"{us:.1f} ({nbytes / us / 1e3:.0f})")
                print(f"| {name}{' gated' if kind == 'gated' else ''} | {n} x {k} | {rows} | {base:.1f} ({nbytes / base / 1e3:.0f}) | "
                      + " | ".join(cells) + f" | {worst:.1e} |", flush=True)
                if kind == "gated":
                    chooser.gated(x, ws[0], ups[0])
                else:
                    chooser.linear(x, ws[0])
            del ws, ups, pairs
    print("\nµs per call (GB/s of weights read). DecodeGemm's own choice (cold-L2 timing, one call each):\n")
    print("| kind | rows | N x K | cuBLAS µs | cuBLASLt µs | Triton µs | runs |\n|---|---|---|---|---|---|---|")
    for c in chooser.table():
        lt = f"{c['cublaslt_us']:.1f}" if "cublaslt_us" in c else "—"
        print(f"| {c['kind']} | {c['rows']} | {c['n']} x {c['k']} | {c['cublas_us']:.1f} | {lt} | {c['triton_us']:.1f} | {c['choice']} |")


if __name__ == "__main__":
    main()
