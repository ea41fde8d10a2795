"""Triton GEMM for decode: out [M, N] = x [M, K] @ w [N, K].T with M (the batch) of 1 to 32.

A decode step multiplies a handful of rows by every weight matrix, so it is bound by how fast
the weights stream from memory. cuBLAS picks its kernel for general shapes; on the narrow
matrices of a tensor-parallel rank (3,584-5,120 output rows) it streams well below the copy
bandwidth (docs/benchmarks.md, GEMM probe). This kernel gives every program BLOCK_N output
rows and a 1/SPLIT_K share of K, so the grid fills the GPU whatever the shape:

- SPLIT_K == 1: the program owns its outputs and writes them.
- SPLIT_K > 1: each program writes an fp32 partial to a workspace and bumps its column
  block's counter; the program that arrives last sums the partials in split order (so the
  result does not depend on arrival order), writes the output and resets the counter for
  the next launch. One launch, no host work, capturable in a CUDA graph.
- GATED: two weights (gate and up of an MLP) in one pass, writing silu(x @ gate.T) * (x @ up.T),
  the MLP's activation fused in (SPLIT_K == 1 only).
- M == 1 (BLOCK_M == 1): multiply-and-sum on the CUDA cores; otherwise tl.dot on rows padded
  to BLOCK_M >= 16 (the tensor cores idle anyway: the weights' bytes are the cost).

Which config, or cuBLAS, runs a shape is decided by timing (decode_gemm.py); this file only
launches a given config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl


@dataclass(frozen=True)
class GemmConfig:
    block_n: int
    block_k: int
    split_k: int
    num_warps: int
    num_stages: int

    def __str__(self) -> str:
        return f"n{self.block_n}k{self.block_k}s{self.split_k}w{self.num_warps}st{self.num_stages}"


# The candidates a shape is timed with: narrow and wide column blocks, with and without
# splitting K (split-K for the shapes whose column blocks alone leave SMs idle).
CONFIGS = (
    GemmConfig(16, 256, 1, 4, 4),
    GemmConfig(32, 128, 1, 4, 4),
    GemmConfig(16, 512, 1, 8, 3),
    GemmConfig(16, 256, 2, 4, 4),
    GemmConfig(32, 256, 4, 8, 3),
)
MAX_ROWS = 32


# M is not specialised: the graph batches (1, 2, 4, 8, 16, 24, 32) then share the compiled
# kernels of their BLOCK_M (1, 16 or 32) instead of compiling one each.
@triton.jit(do_not_specialize=["M"])
def _skinny_gemm_kernel(
    x_ptr,  # [M, K]
    w_ptr,  # [N, K]
    w2_ptr,  # [N, K] up (GATED; else w_ptr again)
    out_ptr,  # [M, N]
    ws_ptr,  # fp32 [SPLIT_K, M, N] partials (SPLIT_K > 1)
    count_ptr,  # int32 [cdiv(N, BLOCK_N)], zero between launches (SPLIT_K > 1)
    M, N, K,
    stride_xm, stride_wn, stride_w2n, stride_om,
    k_per_split,  # multiple of BLOCK_K
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr,
    GATED: tl.constexpr,
    PRECISION: tl.constexpr,  # "ieee" for fp32 inputs (no TF32 rounding), else "tf32" (unused)
):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = tl.arange(0, BLOCK_M)
    n_ok = rn < N
    m_ok = rm < M
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_start = pid_k * k_per_split
    for k0 in range(k_start, k_start + k_per_split, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_ok = rk < K
        x = tl.load(x_ptr + rm[:, None] * stride_xm + rk[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_ptr + rn[:, None] * stride_wn + rk[None, :], mask=n_ok[:, None] & k_ok[None, :], other=0.0)
        if BLOCK_M == 1:
            acc += tl.sum(w.to(tl.float32) * x.to(tl.float32), axis=1)[None, :]
        else:
            acc += tl.dot(x, tl.trans(w), input_precision=PRECISION)
        if GATED:
            w2 = tl.load(w2_ptr + rn[:, None] * stride_w2n + rk[None, :], mask=n_ok[:, None] & k_ok[None, :], other=0.0)
            if BLOCK_M == 1:
                acc2 += tl.sum(w2.to(tl.float32) * x.to(tl.float32), axis=1)[None, :]
            else:
                acc2 += tl.dot(x, tl.trans(w2), input_precision=PRECISION)
    out_mask = m_ok[:, None] & n_ok[None, :]
    out_ptrs = out_ptr + rm[:, None] * stride_om + rn[None, :]
    dtype = out_ptr.dtype.element_ty
    if SPLIT_K == 1:
        if GATED:
            # Rounded like the unfused path: each product in the model dtype, then silu, then *.
            g = acc.to(dtype).to(tl.float32)
            u = acc2.to(dtype).to(tl.float32)
            act = (g / (1.0 + tl.exp(-g))).to(dtype).to(tl.float32)
            tl.store(out_ptrs, (act * u).to(dtype), mask=out_mask)
        else:
            tl.store(out_ptrs, acc.to(dtype), mask=out_mask)
    else:
        part = ws_ptr + rm[:, None] * N + rn[None, :]
        tl.store(part + pid_k * M * N, acc, mask=out_mask)
        # Every thread's partial is issued before the counter moves (the atomic is acq_rel).
        tl.debug_barrier()
        arrived = tl.atomic_add(count_ptr + pid_n, 1)
        if arrived == SPLIT_K - 1:
            total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for s in range(SPLIT_K):  # in split order: the sum does not depend on who came last
                total += tl.load(part + s * M * N, mask=out_mask, other=0.0, cache_modifier=".cg")
            tl.store(out_ptrs, total.to(dtype), mask=out_mask)
            tl.store(count_ptr + pid_n, 0)


@dataclass
class Workspace:
    """The split-K partials and counters of one device; shared by every call on one stream
    (a launch leaves its counters at zero before the next starts)."""

    partials: torch.Tensor  # fp32
    counters: torch.Tensor  # int32, zeros

    @classmethod
    def create(cls, device: torch.device, max_rows: int, max_cols: int, max_split: int) -> Workspace:
        return cls(
            torch.empty(max_split * max_rows * max_cols, dtype=torch.float32, device=device),
            torch.zeros(triton.cdiv(max_cols, 16), dtype=torch.int32, device=device),
        )


def fits(config: GemmConfig, rows: int, cols: int, workspace: Workspace | None) -> bool:
    """Whether `config` can run an [rows, cols] output with `workspace`."""
    if config.split_k == 1:
        return True
    return (
        workspace is not None
        and config.split_k * rows * cols <= workspace.partials.numel()
        and triton.cdiv(cols, config.block_n) <= workspace.counters.numel()
    )


def skinny_gemm(
    x: torch.Tensor,  # [M, K], M <= MAX_ROWS, unit stride along K
    weight: torch.Tensor,  # [N, K], unit stride along K
    config: GemmConfig,
    *,
    up: torch.Tensor | None = None,  # [N, K]: gated (silu(x @ weight.T) * (x @ up.T))
    out: torch.Tensor | None = None,  # [M, N], unit stride along N
    workspace: Workspace | None = None,  # needed when config.split_k > 1
) -> torch.Tensor:
    rows, k = x.shape
    cols = weight.shape[0]
    if out is None:
        out = torch.empty(rows, cols, dtype=x.dtype, device=x.device)
    if up is not None and config.split_k != 1:
        raise ValueError("the gated GEMM runs without split-K")
    if not fits(config, rows, cols, workspace):
        raise ValueError(f"config {config} needs a larger split-K workspace for {rows} x {cols}")
    block_m = 1 if rows == 1 else max(16, triton.next_power_of_2(rows))
    k_per_split = triton.cdiv(triton.cdiv(k, config.split_k), config.block_k) * config.block_k
    splits = triton.cdiv(k, k_per_split)  # the last splits may be empty for tiny K
    ws = workspace.partials if config.split_k > 1 else out
    counters = workspace.counters if config.split_k > 1 else out
    w2 = weight if up is None else up
    _skinny_gemm_kernel[(triton.cdiv(cols, config.block_n), splits)](
        x, weight, w2, out, ws, counters,
        rows, cols, k,
        x.stride(0), weight.stride(0), w2.stride(0), out.stride(0),
        k_per_split,
        BLOCK_M=block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k, SPLIT_K=splits,
        GATED=up is not None, PRECISION="ieee" if x.dtype == torch.float32 else "tf32",
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    return out


@triton.jit
def _silu_mul_kernel(
    y_ptr,  # [M, 2N]: x @ gate.T then x @ up.T, side by side
    out_ptr,  # [M, N]
    N,
    stride_ym, stride_om,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < N
    dtype = out_ptr.dtype.element_ty
    g = tl.load(y_ptr + row * stride_ym + cols, mask=ok, other=0.0).to(tl.float32)
    u = tl.load(y_ptr + row * stride_ym + N + cols, mask=ok, other=0.0).to(tl.float32)
    # Rounded as the unfused torch ops round: silu in the model dtype, then the product.
    act = (g / (1.0 + tl.exp(-g))).to(dtype).to(tl.float32)
    tl.store(out_ptr + row * stride_om + cols, (act * u).to(dtype), mask=ok)


def silu_mul(y: torch.Tensor) -> torch.Tensor:
    """[M, 2N] (gate's products, then up's) -> silu(gate) * up [M, N]: the activation after one
    cuBLAS GEMM over an MLP's gate and up weights laid side by side (decode_gemm.py)."""
    rows, cols = y.shape[0], y.shape[1] // 2
    if y.stride(1) != 1:
        y = y.contiguous()
    out = torch.empty(rows, cols, dtype=y.dtype, device=y.device)
    block = 1024
    if rows:
        _silu_mul_kernel[(rows, triton.cdiv(cols, block))](y, out, cols, y.stride(0), out.stride(0), BLOCK=block, num_warps=4)
    return out
