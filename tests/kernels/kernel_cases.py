"""Helpers of the kernel tests: dtypes and bounds, random paged-attention cases, error measure."""

from __future__ import annotations

from dataclasses import dataclass

import torch

ON_GPU = torch.cuda.is_available()
# Relative-error bounds ||out - ref|| / ||ref|| against an fp32 reference on the same inputs.
BOUNDS = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5}
# The interpreter has no bfloat16 arithmetic (it keeps bf16 as raw uint16): there the
# attention kernels are checked in float16 and float32; bfloat16 runs on the GPU.
ATTENTION_DTYPES = (torch.bfloat16, torch.float16) if ON_GPU else (torch.float16, torch.float32)
ROW_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert torch.isfinite(out).all(), "non-finite values in the output (unwritten or NaN)"
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


@dataclass
class PagedCase:
    q: torch.Tensor  # [N, H, D]
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    block_tables: torch.Tensor
    cu_seqlens_q: torch.Tensor
    seq_lens: torch.Tensor
    scale: float

    def fp32(self) -> "PagedCase":
        return PagedCase(
            self.q.float(), self.k_cache.float(), self.v_cache.float(), self.block_tables,
            self.cu_seqlens_q, self.seq_lens, self.scale,
        )

    def args(self) -> tuple:
        return (self.q, self.k_cache, self.v_cache, self.block_tables, self.cu_seqlens_q, self.seq_lens, self.scale)


def make_paged_case(
    seq_lens: list[int],
    q_lens: list[int],
    *,
    heads: int,
    kv_heads: int,
    head_dim: int,
    block_size: int,
    dtype: torch.dtype,
    device: torch.device,
    window: int = 0,
    generator: torch.Generator,
) -> PagedCase:
    """Random queries and a random paged cache; blocks scattered over the pool in random order.

    Table entries of blocks wholly before every query's window are -1 (freed), and the pool
    holds spare blocks filled with NaN, so a read of a freed or foreign block shows up."""
    b = len(seq_lens)
    max_blocks = max(-(-n // block_size) for n in seq_lens) + 1
    num_blocks = b * max_blocks + 3
    shape = (num_blocks, block_size, kv_heads, head_dim)
    k_cache = torch.randn(shape, generator=generator).to(dtype)
    v_cache = torch.randn(shape, generator=generator).to(dtype)
    order = torch.randperm(num_blocks, generator=generator)
    tables = torch.full((b, max_blocks), -1, dtype=torch.int32)
    used = set()
    for i, (n, t) in enumerate(zip(seq_lens, q_lens)):
        first = 0 if not window else max(0, n - t - window + 1) // block_size
        for j in range(-(-n // block_size)):
            blk = int(order[i * max_blocks + j])
            if j >= first:
                tables[i, j] = blk
                used.add(blk)
    spare = [x for x in range(num_blocks) if x not in used]
    k_cache[spare] = float("nan")
    v_cache[spare] = float("nan")
    for i, (n, t) in enumerate(zip(seq_lens, q_lens)):
        lo = 0 if not window else max(0, n - t - window + 1)  # earliest key any query sees
        for pos in [*range(lo - lo % block_size, lo), *range(n, -(-n // block_size) * block_size)]:
            blk, row = int(tables[i, pos // block_size]), pos % block_size
            k_cache[blk, row] = float("nan")
            v_cache[blk, row] = float("nan")
    cu = torch.tensor([0] + torch.tensor(q_lens).cumsum(0).tolist(), dtype=torch.int32)
    q = torch.randn((int(cu[-1]), heads, head_dim), generator=generator).to(dtype)
    return PagedCase(
        q.to(device), k_cache.to(device), v_cache.to(device), tables.to(device), cu.to(device),
        torch.tensor(seq_lens, dtype=torch.int32, device=device), head_dim**-0.5,
    )


def poisoned_like(t: torch.Tensor) -> torch.Tensor:
    return torch.full_like(t, float("nan"))
