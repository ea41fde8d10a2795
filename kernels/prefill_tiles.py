"""Triton pieces of the prefill attention kernels: FlashAttention-2 over a paged cache.

The program layout is the one of attention_tiles.py (a program owns BLOCK_Q query tokens of
one sequence times the G query heads of one KV head, BLOCK_M rows). What the prefill path
does differently from the decode path (`attend_tiles`):

- Tiles are aligned to the cache block (to the tile when blocks are larger than a tile), so
  a tile of TILE_N keys is whole blocks: one block-table entry per block, each block's rows a
  contiguous run of [rows, D] vectors. The table index and the row within the block of every
  key are compile-time patterns of the key's index in the tile, not a division per key.
- A program's tiles split three ways: those every one of its rows sees wholly (*interior*:
  no mask, no -inf guard, unmasked loads) and the few at the causal diagonal or the sliding
  window's edges (*edge*: masked per key and per row). A 25-token query tile touches one or
  two diagonal tiles, so at 16K keys more than 99% of the tiles take the interior loop.
- Scores stay in the log2 domain: the softmax scale times log2(e) is applied in the one
  multiply-add that also subtracts the running max, and `exp2` replaces `exp`.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def query_rows(
    cu_seqlens_q_ptr,  # [B + 1] int: packed query offsets
    seq_lens_ptr,  # [B] int: keys per sequence, the new tokens included
    seq,  # this program's sequence
    q_block,  # this program's query block index on the grid
    kv_head,
    BLOCK_Q: tl.constexpr,
    BLOCK_M: tl.constexpr,
    GROUP: tl.constexpr,
):
    """The rows of a program: (valid, token, head, q_pos, row_ok, first_pos, last_pos).

    `valid` is False for programs past their sequence's last query block (the grid is an
    upper bound). Rows past BLOCK_Q * GROUP or the chunk's end are not `row_ok`; their scores
    are computed (they are finite) but never stored."""
    q_start = tl.load(cu_seqlens_q_ptr + seq)
    q_len = tl.load(cu_seqlens_q_ptr + seq + 1) - q_start
    local_block = q_block - (q_start // BLOCK_Q + seq)
    seq_len = tl.load(seq_lens_ptr + seq)
    rows = tl.arange(0, BLOCK_M)
    tok = local_block * BLOCK_Q + rows // GROUP  # query index within the sequence
    head = kv_head * GROUP + rows % GROUP
    row_ok = (rows < BLOCK_Q * GROUP) & (tok < q_len)
    first_pos = seq_len - q_len + local_block * BLOCK_Q
    last_pos = seq_len - q_len + tl.minimum((local_block + 1) * BLOCK_Q, q_len) - 1
    return local_block * BLOCK_Q < q_len, q_start + tok, head, seq_len - q_len + tok, row_ok, first_pos, last_pos


@triton.jit
def tile_ranges(
    first_pos,  # position of the program's first query
    last_pos,  # position of its last query
    kv_lo,  # first key any of its rows sees
    window,  # with HAS_WINDOW: a query at p sees keys p - W + 1 ... p
    BLOCK_SIZE: tl.constexpr,
    TILE_N: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
):
    """Tile grid of a program's keys [kv_lo, last_pos]: (base, a, b, n).

    Tile t covers keys [base + t * TILE_N, base + (t + 1) * TILE_N); tiles [0, a) and [b, n)
    are edge tiles (masked), tiles [a, b) interior (every row sees every key of them). `base`
    is kv_lo rounded down to the block (or tile), so a tile is whole blocks."""
    ALIGN: tl.constexpr = BLOCK_SIZE if BLOCK_SIZE < TILE_N else TILE_N
    base = (kv_lo // ALIGN) * ALIGN
    n = tl.cdiv(last_pos + 1 - base, TILE_N)
    # Interior: keys every row sees, [last_pos - W + 1 (window only), first_pos].
    full_hi = (first_pos + 1 - base) // TILE_N  # tiles ending at or before first_pos + 1
    if HAS_WINDOW:
        full_lo_key = last_pos - window + 1
        full_lo = tl.where(full_lo_key > base, tl.cdiv(tl.maximum(full_lo_key - base, 0), TILE_N), 0)
    else:
        full_lo = 0
    a = tl.minimum(full_lo, n)
    b = tl.maximum(tl.minimum(full_hi, n), a)  # no interior tile: b == a, all tiles are edges
    return base, a, b, n


@triton.jit
def tile_offsets(
    table_ptr,  # this sequence's row of the block table
    start,  # first key of the tile (aligned: see tile_ranges)
    kv_lo,  # keys [kv_lo, kv_hi) exist; MASKED tiles read only those
    kv_hi,
    stride_b,  # cache stride of a block
    stride_s,  # cache stride of a row in a block
    MASKED: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    TILE_N: tl.constexpr,
):
    """Element offsets [TILE_N] of a tile's keys in one cache, and which keys exist."""
    # A tile is NB slabs of RB consecutive rows of one block each.
    NB: tl.constexpr = TILE_N // BLOCK_SIZE if TILE_N > BLOCK_SIZE else 1
    RB: tl.constexpr = TILE_N // NB
    j = tl.arange(0, TILE_N)
    slab = j // RB  # compile-time pattern: constant over each block's rows
    pos = start + j
    if MASKED:
        key_ok = (pos >= kv_lo) & (pos < kv_hi)
        # Table entries of blocks before a window may be -1 and past the sequence may not
        # exist: a slab's entry is read only when the slab holds a key that exists.
        slab_first = start + slab * RB
        slab_ok = (slab_first + RB > kv_lo) & (slab_first < kv_hi)
        blk = tl.load(table_ptr + start // BLOCK_SIZE + slab, mask=slab_ok, other=0)
    else:
        key_ok = pos >= 0  # all true: never used by interior tiles
        blk = tl.load(table_ptr + start // BLOCK_SIZE + slab)
    if TILE_N > BLOCK_SIZE:
        row = j % RB  # start is a multiple of BLOCK_SIZE
    else:
        row = start % BLOCK_SIZE + j  # the tile lies inside one block
    return blk.to(tl.int64) * stride_b + row * stride_s, key_ok


@triton.jit
def load_tile(ptrs, key_ok, d_ok, MASKED: tl.constexpr, PADDED_D: tl.constexpr):
    """A [TILE_N, BLOCK_D] K or V tile; interior tiles of an unpadded head load unmasked."""
    if MASKED or PADDED_D:
        x = tl.load(ptrs, mask=key_ok[:, None] & d_ok[None, :], other=0.0)
    else:
        x = tl.load(ptrs)
    return x


@triton.jit
def attend_prefill_tiles(
    acc,  # [BLOCK_M, BLOCK_D] fp32 running sum of p @ V
    m_i,  # [BLOCK_M] fp32 running max of the scores (log2 domain)
    l_i,  # [BLOCK_M] fp32 running sum of exp2(score - m_i)
    q,  # [BLOCK_M, BLOCK_D] query tile in the cache dtype
    q_pos,  # [BLOCK_M] int: position of each row's query
    base,  # key position of tile 0 (tile_ranges)
    t_lo,  # tiles [t_lo, t_hi) of that grid
    t_hi,
    kv_lo,  # keys [kv_lo, kv_hi) exist (MASKED tiles read only those)
    kv_hi,
    window,  # with HAS_WINDOW: a query at p sees keys p - W + 1 ... p
    scale_log2,  # softmax scale * log2(e)
    table_ptr,  # this sequence's row of the block table
    k_ptr,  # K cache, already offset to the program's KV head
    v_ptr,  # V cache, likewise
    stride_kb,  # K cache strides: block, row in block
    stride_ks,
    stride_vb,  # V cache strides: block, row in block
    stride_vs,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,  # HEAD_DIM rounded up to a power of two
    BLOCK_SIZE: tl.constexpr,  # rows per cache block
    TILE_N: tl.constexpr,  # keys per tile
    MASKED: tl.constexpr,  # False: interior tiles, every row sees every key
    HAS_WINDOW: tl.constexpr,
):
    """Online-softmax attention of one query tile over tiles [t_lo, t_hi) of a paged cache."""
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM  # all true unless head_dim is padded
    for t in range(t_lo, t_hi):
        start = base + t * TILE_N
        k_off, key_ok = tile_offsets(table_ptr, start, kv_lo, kv_hi, stride_kb, stride_ks, MASKED, BLOCK_SIZE, TILE_N)
        v_off, _ = tile_offsets(table_ptr, start, kv_lo, kv_hi, stride_vb, stride_vs, MASKED, BLOCK_SIZE, TILE_N)
        k_ptrs = k_ptr + k_off[:, None] + offs_d[None, :]
        v_ptrs = v_ptr + v_off[:, None] + offs_d[None, :]
        k = load_tile(k_ptrs, key_ok, d_ok, MASKED, BLOCK_D != HEAD_DIM)  # [TILE_N, BLOCK_D]
        s = tl.dot(q, tl.trans(k))  # [BLOCK_M, TILE_N] fp32, unscaled
        if MASKED:
            pos = start + tl.arange(0, TILE_N)
            diff = q_pos[:, None] - pos[None, :]
            visible = key_ok[None, :] & (diff >= 0)
            if HAS_WINDOW:
                visible = visible & (diff < window)
            s = tl.where(visible, s * scale_log2, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            # A row with no visible key yet keeps m = -inf; shift by 0 so exp2 gives 0, not NaN.
            m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.exp2(s - m_shift[:, None])
            alpha = tl.exp2(m_i - m_shift)
        else:
            # Every key is visible, so m_new is finite; the scale rides in one multiply-add.
            m_new = tl.maximum(m_i, tl.max(s, 1) * scale_log2)
            p = tl.exp2(s * scale_log2 - m_new[:, None])
            alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = load_tile(v_ptrs, key_ok, d_ok, MASKED, BLOCK_D != HEAD_DIM)  # [TILE_N, BLOCK_D]
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def attend_prefill(
    acc,
    m_i,
    l_i,
    q,
    q_pos,
    first_pos,  # the program's first and last query positions
    last_pos,
    window,  # HAS_WINDOW: W > 0
    scale_log2,
    table_ptr,
    k_ptr,
    v_ptr,
    stride_kb,
    stride_ks,
    stride_vb,
    stride_vs,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    TILE_N: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
):
    """Causal (or sliding-window) attention of a query tile over every key it sees: the
    leading window-edge tiles, the interior tiles, then the diagonal tiles."""
    if HAS_WINDOW:
        kv_lo = tl.maximum(first_pos - window + 1, 0)
    else:
        kv_lo = 0
    kv_hi = last_pos + 1
    base, a, b, n = tile_ranges(first_pos, last_pos, kv_lo, window, BLOCK_SIZE, TILE_N, HAS_WINDOW)
    if HAS_WINDOW:
        acc, m_i, l_i = attend_prefill_tiles(
            acc, m_i, l_i, q, q_pos, base, 0, a, kv_lo, kv_hi, window, scale_log2,
            table_ptr, k_ptr, v_ptr, stride_kb, stride_ks, stride_vb, stride_vs,
            HEAD_DIM, BLOCK_D, BLOCK_SIZE, TILE_N, True, True,
        )
    acc, m_i, l_i = attend_prefill_tiles(
        acc, m_i, l_i, q, q_pos, base, a, b, kv_lo, kv_hi, window, scale_log2,
        table_ptr, k_ptr, v_ptr, stride_kb, stride_ks, stride_vb, stride_vs,
        HEAD_DIM, BLOCK_D, BLOCK_SIZE, TILE_N, False, HAS_WINDOW,
    )
    acc, m_i, l_i = attend_prefill_tiles(
        acc, m_i, l_i, q, q_pos, base, b, n, kv_lo, kv_hi, window, scale_log2,
        table_ptr, k_ptr, v_ptr, stride_kb, stride_ks, stride_vb, stride_vs,
        HEAD_DIM, BLOCK_D, BLOCK_SIZE, TILE_N, True, HAS_WINDOW,
    )
    return acc, m_i, l_i
