"""Triton paged attention: causal or sliding-window, prefill and decode, grouped-query heads.

The split-capable kernel here serves decode steps (one query per sequence) and calls with a
split count > 1: see attention_tiles.py for the program layout. With more than one split
(flash decoding) each program also takes only its share of the keys and writes a partial
softmax state; a second kernel merges the shares. Launch grids depend only on tensor shapes
and the split count, so a decode step can be captured in a CUDA graph. Other prefill calls go
to the prefill kernel (prefill.py), unless `legacy_prefill` asks for this kernel (the
benchmark's before/after comparison).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attention_tiles import LOG2E, attend_tiles, find_sequence, merge_splits, rows_mask, split_range, store_partial
from .launch import AttentionLaunch, default_splits, plan_attention, plan_prefill
from .prefill import paged_prefill


@triton.jit
def _paged_attention_kernel(
    out_ptr,  # [N, H, D] result (not SPLIT)
    part_o_ptr,  # [N, num_splits, H, D] fp32 partials (SPLIT)
    part_ml_ptr,  # [N, num_splits, H, 2] fp32 partial max and sum
    q_ptr,  # [N, H, D] packed queries
    k_ptr,  # [num_blocks, BLOCK_SIZE, KVH, D]
    v_ptr,  # [num_blocks, BLOCK_SIZE, KVH, D]
    block_tables_ptr,  # [B, max_blocks] int
    cu_seqlens_q_ptr,  # [B + 1] int
    seq_lens_ptr,  # [B] int: keys per sequence, the new tokens included
    scale_log2,  # softmax scale * log2(e)
    window,  # W > 0 with HAS_WINDOW: sliding window of W keys
    num_seqs,
    num_heads,
    num_splits,
    stride_qn, stride_qh,
    stride_on, stride_oh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_bt,  # block table row stride
    GROUP: tl.constexpr,  # query heads per KV head
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,  # cache rows per block
    BLOCK_Q: tl.constexpr,  # query tokens per program
    BLOCK_M: tl.constexpr,  # tile rows >= BLOCK_Q * GROUP
    TILE_N: tl.constexpr,  # keys per tile
    SPLIT: tl.constexpr,  # num_splits > 1: write partials for the merge kernel
    HAS_WINDOW: tl.constexpr,
):
    q_block = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    seq = find_sequence(cu_seqlens_q_ptr, q_block, num_seqs, BLOCK_Q)
    q_start = tl.load(cu_seqlens_q_ptr + seq)
    q_len = tl.load(cu_seqlens_q_ptr + seq + 1) - q_start
    local_block = q_block - (q_start // BLOCK_Q + seq)
    if local_block * BLOCK_Q >= q_len:
        return
    seq_len = tl.load(seq_lens_ptr + seq)

    rows = tl.arange(0, BLOCK_M)
    tok = local_block * BLOCK_Q + rows // GROUP  # query index within the sequence
    head = kv_head * GROUP + rows % GROUP
    row_ok = (rows < BLOCK_Q * GROUP) & (tok < q_len)
    q_pos = seq_len - q_len + tok
    token = q_start + tok  # packed row
    offs_d = tl.arange(0, BLOCK_D)
    q_mask = rows_mask(row_ok, HEAD_DIM, BLOCK_D)
    q = tl.load(
        q_ptr + token.to(tl.int64)[:, None] * stride_qn + head[:, None] * stride_qh + offs_d[None, :],
        mask=q_mask,
        other=0.0,
    )  # [BLOCK_M, BLOCK_D]

    # Keys this block needs: up to its last query; with a window, from its first query's start.
    first_pos = seq_len - q_len + local_block * BLOCK_Q
    kv_hi = seq_len - q_len + tl.minimum((local_block + 1) * BLOCK_Q, q_len)
    if HAS_WINDOW:
        kv_lo = tl.maximum(first_pos - window + 1, 0)
    else:
        kv_lo = 0
    lo, hi = split_range(kv_lo, kv_hi, split, num_splits, SPLIT, TILE_N)

    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc, m_i, l_i = attend_tiles(
        acc, m_i, l_i, q, q_pos, lo, hi, window, scale_log2,
        block_tables_ptr + seq.to(tl.int64) * stride_bt,
        k_ptr + kv_head * stride_kh, v_ptr + kv_head * stride_vh,
        stride_kb, stride_ks, stride_vb, stride_vs,
        HEAD_DIM, BLOCK_D, BLOCK_SIZE, TILE_N, HAS_WINDOW,
    )
    if not SPLIT:
        # Rows that hold no query have l = 0; they are masked out of the store.
        o = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
        tl.store(
            out_ptr + token.to(tl.int64)[:, None] * stride_on + head[:, None] * stride_oh + offs_d[None, :],
            o.to(out_ptr.dtype.element_ty),
            mask=q_mask,
        )
    else:
        store_partial(
            part_o_ptr, part_ml_ptr, acc, m_i, l_i, token, head, row_ok, split, num_splits, num_heads,
            HEAD_DIM, BLOCK_D,
        )


@triton.jit
def _merge_kernel(
    out_ptr,  # [N, H, D]
    part_o_ptr,  # [N, num_splits, H, D] fp32
    part_ml_ptr,  # [N, num_splits, H, 2] fp32
    cu_seqlens_q_ptr,  # [B + 1]: rows outside cu[0]:cu[B] belong to no sequence
    num_seqs,
    num_heads,
    num_splits,
    stride_on, stride_oh,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    token = tl.program_id(0)
    head = tl.program_id(1)
    if (token < tl.load(cu_seqlens_q_ptr)) | (token >= tl.load(cu_seqlens_q_ptr + num_seqs)):
        return
    o = merge_splits(part_o_ptr, part_ml_ptr, token, head, num_heads, num_splits, HEAD_DIM, BLOCK_D, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    tl.store(
        out_ptr + token.to(tl.int64) * stride_on + head * stride_oh + offs_d,
        o.to(out_ptr.dtype.element_ty),
        mask=offs_d < HEAD_DIM,
    )


def paged_attention(
    q: torch.Tensor,  # [N, H, D]
    k_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,  # [B, max_blocks]
    cu_seqlens_q: torch.Tensor,  # [B + 1]
    seq_lens: torch.Tensor,  # [B]
    scale: float,
    window: int = 0,
    *,
    out: torch.Tensor | None = None,
    max_seq_len: int | None = None,
    num_splits: int | None = None,
    workspace: torch.Tensor | None = None,
    legacy_prefill: bool = False,
) -> torch.Tensor:
    """Launch the paged attention kernel (inputs already checked by ops.py)."""
    out = torch.empty_like(q) if out is None else out
    if num_splits is None:
        num_splits = default_splits(q, k_cache, block_tables, max_seq_len, window=window)
    prefill = None if legacy_prefill else plan_prefill(q, k_cache, block_tables, num_splits)
    if prefill is not None:
        paged_prefill(prefill, out, q, k_cache, v_cache, block_tables, cu_seqlens_q, seq_lens, scale, window)
        return out
    plan = plan_attention(q, k_cache, block_tables, max_seq_len, num_splits, workspace, window=window)
    _launch(plan, out, q, k_cache, v_cache, block_tables, cu_seqlens_q, seq_lens, scale, window)
    return out


def _launch(
    plan: AttentionLaunch,
    out: torch.Tensor,
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    window: int,
) -> None:
    n, h, d = q.shape
    b = block_tables.shape[0]
    part_o, part_ml = plan.partials(n, h, d)
    _paged_attention_kernel[plan.grid(n, b, k_cache.shape[2])](
        out, part_o, part_ml, q, k_cache, v_cache, block_tables, cu_seqlens_q, seq_lens,
        scale * LOG2E, window, b, h, plan.num_splits,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        block_tables.stride(0),
        GROUP=h // k_cache.shape[2], HEAD_DIM=d, BLOCK_D=plan.block_d, BLOCK_SIZE=k_cache.shape[1],
        BLOCK_Q=plan.block_q, BLOCK_M=plan.block_m, TILE_N=plan.tile_n, SPLIT=plan.num_splits > 1,
        HAS_WINDOW=window > 0, num_warps=plan.num_warps, num_stages=plan.num_stages,
    )
    if plan.num_splits > 1:
        _merge_kernel[(n, h)](
            out, part_o, part_ml, cu_seqlens_q, b, h, plan.num_splits, out.stride(0), out.stride(1),
            HEAD_DIM=d, BLOCK_D=plan.block_d,
            BLOCK_S=triton.next_power_of_2(plan.num_splits), num_warps=4,
        )
