"""Triton building blocks shared by the paged attention and LoopAttention kernels.

A program owns one *query block* of one sequence and one KV head: `BLOCK_Q` consecutive
query tokens times the `G` query heads that share the KV head, folded into `BLOCK_M` rows
(row r is token r // G, head r % G). K/V tiles are therefore read once for all G heads.

Query blocks of all sequences are laid out on grid axis 0 without a host sync (the layout of
vLLM's unified attention): sequence b's blocks start at `cu_seqlens_q[b] // BLOCK_Q + b`, so
`N // BLOCK_Q + B` programs cover every packed query and a program finds its sequence by a
binary search over `cu_seqlens_q`. Programs past a sequence's last block exit at once.

Keys are visited in tiles of `TILE_N` positions that may span several cache blocks: each key's
block comes from the block table, so K/V are read in place (no gather into a copy). Scores
live in the log2 domain (the softmax scale is pre-multiplied by log2(e)) for `exp2`.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = 1.4426950408889634  # scores are kept in the log2 domain for exp2


@triton.jit
def find_sequence(
    cu_seqlens_q_ptr,  # [B + 1] int: packed query offsets
    q_block,  # this program's index on grid axis 0
    num_seqs,  # B
    BLOCK_Q: tl.constexpr,  # query tokens per program
):
    """The largest b with cu_seqlens_q[b] // BLOCK_Q + b <= q_block."""
    # annotated: loop-carried values keep one type even when num_seqs is specialised to 1
    lo: tl.int32 = 0
    hi: tl.int32 = num_seqs
    while lo < hi:
        mid = (lo + hi) // 2
        start = tl.load(cu_seqlens_q_ptr + mid) // BLOCK_Q + mid
        if start <= q_block:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@triton.jit
def rows_mask(rows_ok, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
    """Mask of a [rows, BLOCK_D] tile: the head-dim test only where D is padded, since Triton
    cannot prove arange(D) < D and would split every row load into 2-byte loads."""
    if BLOCK_D == HEAD_DIM:
        mask = rows_ok[:, None]
    else:
        mask = rows_ok[:, None] & (tl.arange(0, BLOCK_D)[None, :] < HEAD_DIM)
    return mask


@triton.jit
def attend_tiles(
    acc,  # [BLOCK_M, BLOCK_D] fp32 running sum of p @ V
    m_i,  # [BLOCK_M] fp32 running max of the scores (log2 domain)
    l_i,  # [BLOCK_M] fp32 running sum of exp2(score - m_i)
    q,  # [BLOCK_M, BLOCK_D] query tile in the cache dtype
    q_pos,  # [BLOCK_M] int: position of each row's query
    kv_lo,  # first key position to visit (inclusive)
    kv_hi,  # last key position to visit (exclusive)
    window,  # with HAS_WINDOW: a query at p sees keys p - W + 1 ... p
    scale_log2,  # softmax scale * log2(e)
    table_ptr,  # this sequence's row of the block table
    k_ptr,  # K cache, already offset to this program's KV head
    v_ptr,  # V cache, likewise
    stride_kb,  # K cache strides: block, row in block
    stride_ks,
    stride_vb,  # V cache strides: block, row in block
    stride_vs,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,  # HEAD_DIM rounded up to a power of two
    BLOCK_SIZE: tl.constexpr,  # rows per cache block
    TILE_N: tl.constexpr,  # keys per tile
    HAS_WINDOW: tl.constexpr,  # False: plain causal
):
    """Online-softmax attention of one query tile over keys [kv_lo, kv_hi) of a paged cache."""
    offs_d = tl.arange(0, BLOCK_D)
    for start in range(kv_lo, kv_hi, TILE_N):
        pos = start + tl.arange(0, TILE_N)
        key_ok = pos < kv_hi
        # Entries before kv_lo (a sliding window's freed blocks, -1) are never loaded.
        blk = tl.load(table_ptr + pos // BLOCK_SIZE, mask=key_ok, other=0).to(tl.int64)
        row = (pos % BLOCK_SIZE).to(tl.int64)
        kv_mask = rows_mask(key_ok, HEAD_DIM, BLOCK_D)
        k = tl.load(
            k_ptr + blk[:, None] * stride_kb + row[:, None] * stride_ks + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )  # [TILE_N, BLOCK_D]
        s = tl.dot(q, tl.trans(k)) * scale_log2  # [BLOCK_M, TILE_N]
        diff = q_pos[:, None] - pos[None, :]
        visible = key_ok[None, :] & (diff >= 0)
        if HAS_WINDOW:
            visible = visible & (diff < window)
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row with no visible key yet keeps m = -inf; shift by 0 so exp2 gives 0, not NaN.
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_shift[:, None])
        alpha = tl.exp2(m_i - m_shift)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(
            v_ptr + blk[:, None] * stride_vb + row[:, None] * stride_vs + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )  # [TILE_N, BLOCK_D]
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def split_range(kv_lo, kv_hi, split, num_splits, SPLIT: tl.constexpr, TILE_N: tl.constexpr):
    """Split `split`'s share [lo, hi) of the keys [kv_lo, kv_hi), in whole tiles."""
    if not SPLIT:
        lo = kv_lo
        hi = kv_hi
    else:
        per_split = tl.cdiv(tl.cdiv(kv_hi - kv_lo, num_splits), TILE_N) * TILE_N
        lo = kv_lo + split * per_split
        hi = tl.minimum(lo + per_split, kv_hi)
    return lo, hi


@triton.jit
def store_partial(
    part_o_ptr,  # [N, num_splits, H, D] fp32: unnormalised sums of p @ V
    part_ml_ptr,  # [N, num_splits, H, 2] fp32: running max (log2 domain) and sum
    acc,
    m_i,
    l_i,
    token,  # [BLOCK_M] packed query row of each tile row
    head,  # [BLOCK_M] query head of each tile row
    row_ok,  # [BLOCK_M] rows that hold a query
    split,
    num_splits,
    num_heads,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Write one split's partial softmax state for the reduce kernel."""
    offs_d = tl.arange(0, BLOCK_D)
    base = (token.to(tl.int64) * num_splits + split) * num_heads + head  # [BLOCK_M]
    tl.store(
        part_o_ptr + base[:, None] * HEAD_DIM + offs_d[None, :],
        acc,
        mask=rows_mask(row_ok, HEAD_DIM, BLOCK_D),
    )
    tl.store(part_ml_ptr + base * 2, m_i, mask=row_ok)
    tl.store(part_ml_ptr + base * 2 + 1, l_i, mask=row_ok)


@triton.jit
def merge_splits(
    part_o_ptr,  # [N, num_splits, H, D] fp32
    part_ml_ptr,  # [N, num_splits, H, 2] fp32
    token,  # scalar packed query row
    head,  # scalar query head
    num_heads,
    num_splits,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_S: tl.constexpr,  # num_splits rounded up to a power of two
):
    """Softmax-weighted merge of the splits of one (query, head): the normalised output [BLOCK_D]."""
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    mask_s = offs_s < num_splits
    base = (token.to(tl.int64) * num_splits + offs_s) * num_heads + head  # [BLOCK_S]
    m = tl.load(part_ml_ptr + base * 2, mask=mask_s, other=float("-inf"))
    l = tl.load(part_ml_ptr + base * 2 + 1, mask=mask_s, other=0.0)
    m_max = tl.max(m, 0)
    # Splits that saw no key hold m = -inf and l = 0: their weight is exactly 0.
    w = tl.where(m == float("-inf"), 0.0, tl.exp2(m - m_max))
    o = tl.load(
        part_o_ptr + base[:, None] * HEAD_DIM + offs_d[None, :],
        mask=rows_mask(mask_s, HEAD_DIM, BLOCK_D),
        other=0.0,
    )  # [BLOCK_S, BLOCK_D]
    return tl.sum(o * w[:, None], 0) / tl.sum(l * w, 0)


@triton.jit
def loop_gate(
    q,  # [BLOCK_M, BLOCK_D] query tile (or one query row [BLOCK_D])
    head,  # [BLOCK_M] query head of each row (or a scalar)
    gate_w_ptr,  # [H, D]
    gate_b_ptr,  # [H]
    stride_gw,  # gate weight row stride
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """sigmoid(w_h . q_h + b_h) in fp32, per row."""
    offs_d = tl.arange(0, BLOCK_D)
    w = tl.load(
        gate_w_ptr + head[:, None] * stride_gw + offs_d[None, :],
        mask=offs_d[None, :] < HEAD_DIM,
        other=0.0,
    ).to(tl.float32)
    logit = tl.sum(q.to(tl.float32) * w, 1) + tl.load(gate_b_ptr + head).to(tl.float32)
    return tl.sigmoid(logit)
