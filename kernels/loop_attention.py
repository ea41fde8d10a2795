"""Triton fused LoopAttention: global + sliding-window attention, per-head gate and mix, one pass.

A program holds its query tile once and runs two online softmaxes: over loop 0's paged K/V
(causal, every earlier position) and over the loop's own window cache (the last W keys), then
computes g = sigmoid(w_h . q_h + b_h) from the same tile and writes g * global + (1 - g) *
local. The unfused reference makes two attention passes that each write a full [N, H, D]
result, a gate einsum and three element-wise passes.

With more than one split (decode at long context) split s takes share s of the global keys and
share s of the window keys and writes both partial states; the merge kernel combines each set
and applies the gate. This kernel serves decode steps and split calls; other prefill calls go
to the fused prefill kernel of prefill.py unless `legacy_prefill` asks for this one.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attention_tiles import (
    LOG2E, attend_tiles, find_sequence, loop_gate, merge_splits, rows_mask, split_range, store_partial,
)
from .launch import default_splits, plan_attention, plan_prefill
from .prefill import loop_prefill


@triton.jit
def _loop_attention_kernel(
    out_ptr,  # [N, H, D] result (not SPLIT)
    part_o_ptr,  # global partials [N, num_splits, H, D] fp32 (SPLIT)
    part_ml_ptr,  # [N, num_splits, H, 2]
    wpart_o_ptr,  # window partials, same layout
    wpart_ml_ptr,
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
    num_heads,
    num_splits,
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
    SPLIT: tl.constexpr,  # num_splits > 1: write partials for the merge kernel
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
    tok = local_block * BLOCK_Q + rows // GROUP
    head = kv_head * GROUP + rows % GROUP
    row_ok = (rows < BLOCK_Q * GROUP) & (tok < q_len)
    q_pos = seq_len - q_len + tok
    token = q_start + tok
    offs_d = tl.arange(0, BLOCK_D)
    q_mask = rows_mask(row_ok, HEAD_DIM, BLOCK_D)
    q = tl.load(
        q_ptr + token.to(tl.int64)[:, None] * stride_qn + head[:, None] * stride_qh + offs_d[None, :],
        mask=q_mask,
        other=0.0,
    )

    first_pos = seq_len - q_len + local_block * BLOCK_Q
    kv_hi = seq_len - q_len + tl.minimum((local_block + 1) * BLOCK_Q, q_len)
    wkv_lo = tl.maximum(first_pos - window + 1, 0)

    # Global: causal over loop 0's keys.
    lo, hi = split_range(0, kv_hi, split, num_splits, SPLIT, TILE_N)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc, m_i, l_i = attend_tiles(
        acc, m_i, l_i, q, q_pos, lo, hi, 0, scale_log2,
        block_tables_ptr + seq.to(tl.int64) * stride_bt,
        k_ptr + kv_head * stride_kh, v_ptr + kv_head * stride_vh,
        stride_kb, stride_ks, stride_vb, stride_vs,
        HEAD_DIM, BLOCK_D, BLOCK_SIZE, TILE_N, False,
    )
    # Local: the last W keys of this loop's own K/V.
    wlo, whi = split_range(wkv_lo, kv_hi, split, num_splits, SPLIT, TILE_N)
    wacc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    wm_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    wl_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    wacc, wm_i, wl_i = attend_tiles(
        wacc, wm_i, wl_i, q, q_pos, wlo, whi, window, scale_log2,
        wblock_tables_ptr + seq.to(tl.int64) * stride_wbt,
        wk_ptr + kv_head * stride_wkh, wv_ptr + kv_head * stride_wvh,
        stride_wkb, stride_wks, stride_wvb, stride_wvs,
        HEAD_DIM, BLOCK_D, WBLOCK_SIZE, TILE_N, True,
    )
    if not SPLIT:
        g = loop_gate(q, head, gate_w_ptr, gate_b_ptr, stride_gw, HEAD_DIM, BLOCK_D)
        # Rows that hold no query have l = 0; they are masked out of the store.
        o = (g / tl.where(l_i > 0, l_i, 1.0))[:, None] * acc + ((1.0 - g) / tl.where(wl_i > 0, wl_i, 1.0))[:, None] * wacc
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
        store_partial(
            wpart_o_ptr, wpart_ml_ptr, wacc, wm_i, wl_i, token, head, row_ok, split, num_splits, num_heads,
            HEAD_DIM, BLOCK_D,
        )


@triton.jit
def _loop_merge_kernel(
    out_ptr,  # [N, H, D]
    part_o_ptr,  # global partials [N, num_splits, H, D]
    part_ml_ptr,
    wpart_o_ptr,  # window partials
    wpart_ml_ptr,
    q_ptr,  # [N, H, D]: the gate is recomputed from the query
    gate_w_ptr,
    gate_b_ptr,
    cu_seqlens_q_ptr,
    num_seqs,
    num_heads,
    num_splits,
    stride_qn, stride_qh,
    stride_on, stride_oh,
    stride_gw,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    token = tl.program_id(0)
    head = tl.program_id(1)
    if (token < tl.load(cu_seqlens_q_ptr)) | (token >= tl.load(cu_seqlens_q_ptr + num_seqs)):
        return
    glob = merge_splits(part_o_ptr, part_ml_ptr, token, head, num_heads, num_splits, HEAD_DIM, BLOCK_D, BLOCK_S)
    local = merge_splits(wpart_o_ptr, wpart_ml_ptr, token, head, num_heads, num_splits, HEAD_DIM, BLOCK_D, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    q = tl.load(q_ptr + token.to(tl.int64) * stride_qn + head * stride_qh + offs_d, mask=mask_d, other=0.0)
    w = tl.load(gate_w_ptr + head * stride_gw + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    g = tl.sigmoid(tl.sum(q.to(tl.float32) * w, 0) + tl.load(gate_b_ptr + head).to(tl.float32))
    o = g * glob + (1.0 - g) * local
    tl.store(out_ptr + token.to(tl.int64) * stride_on + head * stride_oh + offs_d, o.to(out_ptr.dtype.element_ty), mask=mask_d)


def loop_attention(
    q: torch.Tensor,  # [N, H, D]
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    wk_cache: torch.Tensor,
    wv_cache: torch.Tensor,
    window_block_tables: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    window: int,
    gate_weight: torch.Tensor,  # [H, D]
    gate_bias: torch.Tensor,  # [H]
    *,
    out: torch.Tensor | None = None,
    max_seq_len: int | None = None,
    num_splits: int | None = None,
    workspace: torch.Tensor | None = None,
    legacy_prefill: bool = False,
) -> torch.Tensor:
    """Launch the fused LoopAttention kernel (inputs already checked by ops.py)."""
    out = torch.empty_like(q) if out is None else out
    if num_splits is None:
        num_splits = default_splits(q, k_cache, block_tables, max_seq_len, sets=2)
    prefill = None if legacy_prefill else plan_prefill(
        q, k_cache, block_tables, num_splits, loop=True, window_block_size=wk_cache.shape[1]
    )
    if prefill is not None:
        loop_prefill(
            prefill, out, q, k_cache, v_cache, block_tables, wk_cache, wv_cache, window_block_tables,
            cu_seqlens_q, seq_lens, scale, window, gate_weight, gate_bias,
        )
        return out
    plan = plan_attention(q, k_cache, block_tables, max_seq_len, num_splits, workspace, sets=2)
    n, h, d = q.shape
    b = block_tables.shape[0]
    part_o, part_ml, wpart_o, wpart_ml = plan.partials(n, h, d, sets=2)
    _loop_attention_kernel[plan.grid(n, b, k_cache.shape[2])](
        out, part_o, part_ml, wpart_o, wpart_ml, q, k_cache, v_cache, wk_cache, wv_cache,
        block_tables, window_block_tables, cu_seqlens_q, seq_lens, gate_weight, gate_bias,
        scale * LOG2E, window, b, h, plan.num_splits,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        wk_cache.stride(0), wk_cache.stride(1), wk_cache.stride(2),
        wv_cache.stride(0), wv_cache.stride(1), wv_cache.stride(2),
        block_tables.stride(0), window_block_tables.stride(0), gate_weight.stride(0),
        GROUP=h // k_cache.shape[2], HEAD_DIM=d, BLOCK_D=plan.block_d,
        BLOCK_SIZE=k_cache.shape[1], WBLOCK_SIZE=wk_cache.shape[1],
        BLOCK_Q=plan.block_q, BLOCK_M=plan.block_m, TILE_N=plan.tile_n, SPLIT=plan.num_splits > 1,
        num_warps=plan.num_warps, num_stages=plan.num_stages,
    )
    if plan.num_splits > 1:
        _loop_merge_kernel[(n, h)](
            out, part_o, part_ml, wpart_o, wpart_ml, q, gate_weight, gate_bias, cu_seqlens_q, b, h, plan.num_splits,
            q.stride(0), q.stride(1), out.stride(0), out.stride(1), gate_weight.stride(0),
            HEAD_DIM=d, BLOCK_D=plan.block_d,
            BLOCK_S=triton.next_power_of_2(plan.num_splits), num_warps=4,
        )
    return out
