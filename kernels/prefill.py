"""Triton prefill kernels: paged causal / sliding-window attention and fused LoopAttention.

They serve every call with more queries than sequences (prefill chunks, mixed steps) and one
split; decode steps and split calls keep the split-capable kernels of paged_attention.py and
loop_attention.py. The tile loop is prefill_tiles.py's (interior tiles unmasked, block-
granular K/V addressing, exp2 scores). Programs run heaviest first: query block i of the grid
is numbered from its end, so the blocks with the most keys start first and the short ones
fill the tail of the launch.

The fused LoopAttention prefill runs the window pass first and keeps its gated result in the
output dtype while the long global pass runs (32 registers a thread instead of a second fp32
accumulator's 64 at 8 warps): the reference rounds the local attention to that dtype too.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attention_tiles import LOG2E, find_sequence, loop_gate, rows_mask
from .launch import PrefillLaunch
from .prefill_tiles import attend_prefill, query_rows


@triton.jit
def _paged_prefill_kernel(
    out_ptr,  # [N, H, D] result
    q_ptr,  # [N, H, D] packed queries
    k_ptr,  # [num_blocks, BLOCK_SIZE, KVH, D]
    v_ptr,  # [num_blocks, BLOCK_SIZE, KVH, D]
    block_tables_ptr,  # [B, max_blocks] int
    cu_seqlens_q_ptr,  # [B + 1] int
    seq_lens_ptr,  # [B] int: keys per sequence, the new tokens included
    scale_log2,  # softmax scale * log2(e)
    window,  # W > 0 with HAS_WINDOW: sliding window of W keys
    num_seqs,
    stride_qn, stride_qh,
    stride_on, stride_oh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_bt,  # block table row stride
    GROUP: tl.constexpr,  # query heads per KV head
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,  # cache rows per block (a power of two)
    BLOCK_Q: tl.constexpr,  # query tokens per program
    BLOCK_M: tl.constexpr,  # tile rows >= BLOCK_Q * GROUP
    TILE_N: tl.constexpr,  # keys per tile
    HAS_WINDOW: tl.constexpr,
):
    q_block = tl.num_programs(0) - 1 - tl.program_id(0)  # heaviest first
    kv_head = tl.program_id(1)
    seq = find_sequence(cu_seqlens_q_ptr, q_block, num_seqs, BLOCK_Q)
    valid, token, head, q_pos, row_ok, first_pos, last_pos = query_rows(
        cu_seqlens_q_ptr, seq_lens_ptr, seq, q_block, kv_head, BLOCK_Q, BLOCK_M, GROUP,
    )
    if not valid:
        return
    offs_d = tl.arange(0, BLOCK_D)
    q_mask = rows_mask(row_ok, HEAD_DIM, BLOCK_D)
    q = tl.load(
        q_ptr + token.to(tl.int64)[:, None] * stride_qn + head[:, None] * stride_qh + offs_d[None, :],
        mask=q_mask,
        other=0.0,
    )  # [BLOCK_M, BLOCK_D]
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc, m_i, l_i = attend_prefill(
        acc, m_i, l_i, q, q_pos, first_pos, last_pos, window, scale_log2,
        block_tables_ptr + seq.to(tl.int64) * stride_bt,
        k_ptr + kv_head * stride_kh, v_ptr + kv_head * stride_vh,
        stride_kb, stride_ks, stride_vb, stride_vs,
        HEAD_DIM, BLOCK_D, BLOCK_SIZE, TILE_N, HAS_WINDOW,
    )
    # Rows that hold no query may have l = 0; they are masked out of the store.
    o = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(
        out_ptr + token.to(tl.int64)[:, None] * stride_on + head[:, None] * stride_oh + offs_d[None, :],
        o.to(out_ptr.dtype.element_ty),
        mask=q_mask,
    )


@triton.jit
def _loop_prefill_kernel(
    out_ptr,  # [N, H, D] result
    q_ptr,  # [N, H, D] post-RoPE queries of a loop >= 1
    k_ptr,  # loop 0's K cache [num_blocks, BLOCK_SIZE, KVH, D]
    v_ptr,
    wk_ptr,  # the loop's window K cache [num_wblocks, WBLOCK_SIZE, KVH, D]
    wv_ptr,
    block_tables_ptr,  # [B, max_blocks] into k/v
    wblock_tables_ptr,  # [B, max_wblocks] into wk/wv
    cu_seqlens_q_ptr,  # [B + 1]
    seq_lens_ptr,  # [B]
    gate_w_ptr,  # [H, D]
    gate_b_ptr,  # [H]
    scale_log2,
    window,  # W > 0
    num_seqs,
    stride_qn, stride_qh,
    stride_on, stride_oh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_wkb, stride_wks, stride_wkh,
    stride_wvb, stride_wvs, stride_wvh,
    stride_bt, stride_wbt,
    stride_gw,
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    WBLOCK_SIZE: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_M: tl.constexpr,
    TILE_N: tl.constexpr,
):
    q_block = tl.num_programs(0) - 1 - tl.program_id(0)  # heaviest first
    kv_head = tl.program_id(1)
    seq = find_sequence(cu_seqlens_q_ptr, q_block, num_seqs, BLOCK_Q)
    valid, token, head, q_pos, row_ok, first_pos, last_pos = query_rows(
        cu_seqlens_q_ptr, seq_lens_ptr, seq, q_block, kv_head, BLOCK_Q, BLOCK_M, GROUP,
    )
    if not valid:
        return
    offs_d = tl.arange(0, BLOCK_D)
    q_mask = rows_mask(row_ok, HEAD_DIM, BLOCK_D)
    q = tl.load(
        q_ptr + token.to(tl.int64)[:, None] * stride_qn + head[:, None] * stride_qh + offs_d[None, :],
        mask=q_mask,
        other=0.0,
    )
    g = loop_gate(q, head, gate_w_ptr, gate_b_ptr, stride_gw, HEAD_DIM, BLOCK_D)  # [BLOCK_M] fp32

    # Local: the last W keys of this loop's own K/V; kept gated, in the output dtype.
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc, m_i, l_i = attend_prefill(
        acc, m_i, l_i, q, q_pos, first_pos, last_pos, window, scale_log2,
        wblock_tables_ptr + seq.to(tl.int64) * stride_wbt,
        wk_ptr + kv_head * stride_wkh, wv_ptr + kv_head * stride_wvh,
        stride_wkb, stride_wks, stride_wvb, stride_wvs,
        HEAD_DIM, BLOCK_D, WBLOCK_SIZE, TILE_N, True,
    )
    local = (((1.0 - g) / tl.where(l_i > 0, l_i, 1.0))[:, None] * acc).to(out_ptr.dtype.element_ty)

    # Global: causal over loop 0's keys.
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc, m_i, l_i = attend_prefill(
        acc, m_i, l_i, q, q_pos, first_pos, last_pos, window, scale_log2,
        block_tables_ptr + seq.to(tl.int64) * stride_bt,
        k_ptr + kv_head * stride_kh, v_ptr + kv_head * stride_vh,
        stride_kb, stride_ks, stride_vb, stride_vs,
        HEAD_DIM, BLOCK_D, BLOCK_SIZE, TILE_N, False,
    )
    o = (g / tl.where(l_i > 0, l_i, 1.0))[:, None] * acc + local.to(tl.float32)
    tl.store(
        out_ptr + token.to(tl.int64)[:, None] * stride_on + head[:, None] * stride_oh + offs_d[None, :],
        o.to(out_ptr.dtype.element_ty),
        mask=q_mask,
    )


def paged_prefill(
    plan: PrefillLaunch,
    out: torch.Tensor,  # [N, H, D]
    q: torch.Tensor,  # [N, H, D]
    k_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,  # [B, max_blocks]
    cu_seqlens_q: torch.Tensor,  # [B + 1]
    seq_lens: torch.Tensor,  # [B]
    scale: float,
    window: int,
) -> None:
    """Launch the paged prefill kernel (inputs checked by ops.py, plan from plan_prefill)."""
    n, h, d = q.shape
    b = block_tables.shape[0]
    _paged_prefill_kernel[plan.grid(n, b, k_cache.shape[2])](
        out, q, k_cache, v_cache, block_tables, cu_seqlens_q, seq_lens,
        scale * LOG2E, window, b,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        block_tables.stride(0),
        GROUP=h // k_cache.shape[2], HEAD_DIM=d, BLOCK_D=plan.block_d, BLOCK_SIZE=k_cache.shape[1],
        BLOCK_Q=plan.block_q, BLOCK_M=plan.block_m, TILE_N=plan.tile_n, HAS_WINDOW=window > 0,
        num_warps=plan.num_warps, num_stages=plan.num_stages,
    )


def loop_prefill(
    plan: PrefillLaunch,
    out: torch.Tensor,  # [N, H, D]
    q: torch.Tensor,  # [N, H, D] post-RoPE queries of a loop >= 1
    k_cache: torch.Tensor,  # loop 0's cache
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    wk_cache: torch.Tensor,  # this loop's window cache
    wv_cache: torch.Tensor,
    window_block_tables: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    window: int,
    gate_weight: torch.Tensor,  # [H, D]
    gate_bias: torch.Tensor,  # [H]
) -> None:
    """Launch the fused LoopAttention prefill kernel (inputs checked by ops.py)."""
    n, h, d = q.shape
    b = block_tables.shape[0]
    _loop_prefill_kernel[plan.grid(n, b, k_cache.shape[2])](
        out, q, k_cache, v_cache, wk_cache, wv_cache, block_tables, window_block_tables,
        cu_seqlens_q, seq_lens, gate_weight, gate_bias, scale * LOG2E, window, b,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        wk_cache.stride(0), wk_cache.stride(1), wk_cache.stride(2),
        wv_cache.stride(0), wv_cache.stride(1), wv_cache.stride(2),
        block_tables.stride(0), window_block_tables.stride(0), gate_weight.stride(0),
        GROUP=h // k_cache.shape[2], HEAD_DIM=d, BLOCK_D=plan.block_d,
        BLOCK_SIZE=k_cache.shape[1], WBLOCK_SIZE=wk_cache.shape[1],
        BLOCK_Q=plan.block_q, BLOCK_M=plan.block_m, TILE_N=plan.tile_n,
        num_warps=plan.num_warps, num_stages=plan.num_stages,
    )
