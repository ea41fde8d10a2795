"""Plain-torch references of the kernels: the CPU path of the engine and the tests' oracle.

Layout shared by every paged kernel (the vLLM / flash-attention paged layout):

- A K or V cache of one layer is `[num_blocks, block_size, KVH, D]`. Position p of sequence b
  lives in block `block_tables[b, p // block_size]` at row `p % block_size`.
- Queries of all sequences of a step are packed: `q` is `[N, H, D]`, sequence b owns rows
  `cu_seqlens_q[b] : cu_seqlens_q[b + 1]`, which are its *last* positions: with
  `seq_lens[b]` keys in the cache (the new tokens' K/V already written), its T queries sit at
  positions `seq_lens[b] - T ... seq_lens[b] - 1`. Decode is T == 1.
- A query at position p sees keys at positions <= p (causal); with `window = W > 0` only the
  W keys p - W + 1 ... p. Block-table entries of blocks wholly before every query's window
  are never read (a sliding-window cache may have freed them: -1 there is allowed).
- Grouped-query heads: query head h reads KV head h // (H // KVH); K/V are never copied.

The Loop model's later loops keep their own K/V in a window cache of the same layout (own
block tables) and mix global attention over loop 0's cache with local sliding-window
attention over that window cache through a per-head gate (see `loop_attention`).

Extensions the kernels need and the references accept too (all optional, keyword-only):
`out` (a preallocated result), and the kernels' launch hints `max_seq_len`, `num_splits` and
`workspace`, which change nothing here. `write_kv` skips negative slots (padding rows of a
CUDA-graph batch). The row-wise references (`rms_norm`, `add_rms_norm`, `apply_rope`) are
the engine's layer math, bit for bit in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def write_kv(
    k_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    v_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    k: torch.Tensor,  # [N, KVH, D] new tokens' keys
    v: torch.Tensor,  # [N, KVH, D]
    slots: torch.Tensor,  # [N] int: block * block_size + row of each new token; < 0: skip
) -> None:
    """Scatter new K/V into their cache slots (in place)."""
    kvh, d = k_cache.shape[2], k_cache.shape[3]
    slots = slots.long()
    keep = slots >= 0
    if not bool(keep.all()):
        slots, k, v = slots[keep], k[keep], v[keep]
    k_cache.view(-1, kvh, d).index_copy_(0, slots, k.to(k_cache.dtype))
    v_cache.view(-1, kvh, d).index_copy_(0, slots, v.to(v_cache.dtype))


def paged_attention(
    q: torch.Tensor,  # [N, H, D] packed queries
    k_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    v_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    block_tables: torch.Tensor,  # [B, max_blocks] int
    cu_seqlens_q: torch.Tensor,  # [B + 1] int
    seq_lens: torch.Tensor,  # [B] int, keys per sequence including the new tokens
    scale: float,
    window: int = 0,  # 0: full causal; W > 0: each query sees its last W keys
    *,
    out: torch.Tensor | None = None,  # [N, H, D]; rows of no sequence are left as they are
    max_seq_len: int | None = None,  # launch hints of the kernels (ops.py); unused here
    num_splits: int | None = None,
    workspace: torch.Tensor | None = None,
) -> torch.Tensor:  # [N, H, D]
    """Causal (optionally sliding-window) attention over a paged K/V cache."""
    out = torch.empty_like(q) if out is None else out
    cu = cu_seqlens_q.tolist()
    lens = seq_lens.tolist()
    for b in range(len(lens)):
        lo_q, hi_q = cu[b], cu[b + 1]
        if hi_q == lo_q:
            continue
        out[lo_q:hi_q] = _attend_one(
            q[lo_q:hi_q], k_cache, v_cache, block_tables[b], lens[b], scale, window
        )
    return out


def loop_attention(
    q: torch.Tensor,  # [N, H, D] post-RoPE queries of a loop >= 1
    k_cache: torch.Tensor,  # loop 0's cache of this layer [num_blocks, block_size, KVH, D]
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,  # [B, max_blocks] into k_cache / v_cache
    wk_cache: torch.Tensor,  # this loop's window cache of this layer, same layout
    wv_cache: torch.Tensor,
    window_block_tables: torch.Tensor,  # [B, max_blocks] into wk_cache / wv_cache
    cu_seqlens_q: torch.Tensor,  # [B + 1]
    seq_lens: torch.Tensor,  # [B]
    scale: float,
    window: int,  # the Loop model's loop_window_size W (> 0)
    gate_weight: torch.Tensor,  # [H, D]
    gate_bias: torch.Tensor,  # [H]
    *,
    out: torch.Tensor | None = None,
    max_seq_len: int | None = None,  # launch hints of the kernels (ops.py); unused here
    num_splits: int | None = None,
    workspace: torch.Tensor | None = None,
) -> torch.Tensor:  # [N, H, D]
    """LoopAttention: g * global + (1 - g) * local, g = sigmoid(w_h . q_h + b_h) per head.

    Global: causal attention of q over loop 0's K/V (every earlier position). Local: causal
    attention over this loop's own K/V within the last W keys (the current token included).
    """
    glob = paged_attention(q, k_cache, v_cache, block_tables, cu_seqlens_q, seq_lens, scale)
    local = paged_attention(q, wk_cache, wv_cache, window_block_tables, cu_seqlens_q, seq_lens, scale, window)
    g = loop_gate(q, gate_weight, gate_bias)
    mixed = g * glob + (1 - g) * local
    if out is None:
        return mixed
    lo, hi = int(cu_seqlens_q[0]), int(cu_seqlens_q[-1])
    out[lo:hi] = mixed[lo:hi]
    return out


def loop_gate(q: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """q [N, H, D] -> g [N, H, 1] = sigmoid(w_h . q_h + b_h), in q's dtype."""
    return torch.sigmoid(torch.einsum("nhd,hd->nh", q, weight) + bias).unsqueeze(-1)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dim: normalise in fp32, cast back, then scale in the model dtype."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual update and the next norm: h = residual + x -> (rms_norm(h), h)."""
    h = residual + x
    return rms_norm(h, weight, eps), h


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE of packed heads: x [N, H, D], cos/sin [N, D] (model dtype) -> [N, H, D]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]


def _attend_one(
    q: torch.Tensor,  # [T, H, D]
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    table: torch.Tensor,  # [max_blocks]
    seq_len: int,
    scale: float,
    window: int,
) -> torch.Tensor:  # [T, H, D]
    d = q.shape[2]
    bs, kvh = k_cache.shape[1], k_cache.shape[2]
    first_q = seq_len - q.shape[0]
    lo = max(0, first_q - window + 1) if window else 0  # earliest key any query sees
    pos = torch.arange(lo, seq_len, device=q.device)
    slots = table.to(q.device).long()[pos // bs] * bs + pos % bs
    k = k_cache.view(-1, kvh, d)[slots].transpose(0, 1)  # [KVH, S, D]
    v = v_cache.view(-1, kvh, d)[slots].transpose(0, 1)
    return attend_keys(q, k, v, lo, seq_len, scale, window)


def attend_keys(
    q: torch.Tensor,  # [T, H, D]: the queries at positions seq_len - T .. seq_len - 1
    k: torch.Tensor,  # [KVH, S, D]: the keys at positions lo .. seq_len - 1
    v: torch.Tensor,
    lo: int,
    seq_len: int,
    scale: float,
    window: int,
) -> torch.Tensor:  # [T, H, D]
    """Causal (and, with `window`, sliding-window) attention of a sequence's last queries over
    its gathered keys: the one computation every CPU path shares, so their results agree bit
    for bit."""
    t, h, d = q.shape
    kvh = k.shape[0]
    pos = torch.arange(lo, seq_len, device=q.device)
    q_pos = torch.arange(seq_len - t, seq_len, device=q.device)
    diff = q_pos[:, None] - pos[None, :]  # [T, S]
    mask = diff >= 0
    if window:
        mask &= diff < window
    groups = h // kvh
    # Fold the query heads that share a KV head into the query length: [KVH, G*T, D].
    folded = q.transpose(0, 1).reshape(kvh, groups * t, d)
    # 4-D inputs: with 3-D ones PyTorch's CPU backend falls back to its slow math kernel.
    o = F.scaled_dot_product_attention(
        folded[None], k[None], v[None], attn_mask=mask.repeat(groups, 1)[None, None], scale=scale
    )[0]  # [KVH, G*T, D]
    return o.reshape(h, t, d).transpose(0, 1)
