"""Triton K/V write: scatter the new tokens' keys and values into their paged cache slots.

One launch writes K and V (the reference makes two `index_copy_` calls and a dtype cast each).
A negative slot marks a padding row of a CUDA-graph batch and is skipped.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _write_kv_kernel(
    k_cache_ptr,  # [num_blocks, BLOCK_SIZE, KVH, D]
    v_cache_ptr,
    k_ptr,  # [N, KVH, D] new keys
    v_ptr,  # [N, KVH, D] new values
    slots_ptr,  # [N] int: block * BLOCK_SIZE + row; < 0 skips the row
    num_kv_heads,
    stride_kn, stride_kh,
    stride_vn, stride_vh,
    stride_ckb, stride_cks, stride_ckh,
    stride_cvb, stride_cvs, stride_cvh,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr,  # KV heads rounded up to a power of two
    BLOCK_SIZE: tl.constexpr,
):
    n = tl.program_id(0)
    slot = tl.load(slots_ptr + n).to(tl.int64)
    if slot < 0:
        return
    blk = slot // BLOCK_SIZE
    row = slot % BLOCK_SIZE
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_h[:, None] < num_kv_heads) & (offs_d[None, :] < HEAD_DIM)
    n64 = n.to(tl.int64)
    k = tl.load(k_ptr + n64 * stride_kn + offs_h[:, None] * stride_kh + offs_d[None, :], mask=mask)
    v = tl.load(v_ptr + n64 * stride_vn + offs_h[:, None] * stride_vh + offs_d[None, :], mask=mask)
    tl.store(
        k_cache_ptr + blk * stride_ckb + row * stride_cks + offs_h[:, None] * stride_ckh + offs_d[None, :],
        k.to(k_cache_ptr.dtype.element_ty),
        mask=mask,
    )
    tl.store(
        v_cache_ptr + blk * stride_cvb + row * stride_cvs + offs_h[:, None] * stride_cvh + offs_d[None, :],
        v.to(v_cache_ptr.dtype.element_ty),
        mask=mask,
    )


def write_kv(
    k_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    v_cache: torch.Tensor,
    k: torch.Tensor,  # [N, KVH, D]
    v: torch.Tensor,
    slots: torch.Tensor,  # [N]
) -> None:
    """Launch the K/V write (inputs already checked by ops.py)."""
    n, kvh, d = k.shape
    if n == 0:
        return
    _write_kv_kernel[(n,)](
        k_cache, v_cache, k, v, slots, kvh,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        HEAD_DIM=d, BLOCK_D=triton.next_power_of_2(d), BLOCK_H=triton.next_power_of_2(kvh),
        BLOCK_SIZE=k_cache.shape[1], num_warps=4,
    )
