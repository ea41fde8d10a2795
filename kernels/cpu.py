"""The CPU path of the paged attention ops: the reference's results, bit for bit, in fewer ops.

reference.py is written to be read: per sequence and call it gathers the keys one slot at a
time (an advanced-indexing gather of every key position) and builds a causal mask even for a
decode step, whose single query sees every key it gathers. On a CPU every op costs
microseconds of dispatch and a slot-by-slot gather of 2K keys costs as much as the attention
itself, 12 times per token for a 4-layer Loop model. Here, with the reference's semantics:

- keys are read a block at a time and only the blocks a query can see (the window's blocks
  for a sliding window); blocks of consecutive ids (the block pool hands a growing table the
  id after its last block when it can, engine/serving/blocks.py) are one slice of the cache,
  read in place; other tables are gathered (`index_select` of block ids: whole blocks);
- a decode step (one query per sequence) uses no mask: its query sees every key read;
- a prefill chunk keeps the reference's causal (and window) mask;
- block tables, sequence lengths and K/V slots are read on the host (numpy over the CPU
  tensors' memory), not by tensor ops.

Each `scaled_dot_product_attention` call gets the reference's values with the reference's
strides, one sequence at a time as in the reference (a call over a batch of sequences
rounds differently), so the results are the reference's bits
(tests/kernels/test_cpu_attention.py) and greedy decoding is the same whichever path ran.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import reference
from .reference import attend_keys, loop_gate


def write_kv(
    k_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    v_cache: torch.Tensor,
    k: torch.Tensor,  # [N, KVH, D]
    v: torch.Tensor,
    slots: torch.Tensor,  # [N] int; < 0: skip
) -> None:
    """reference.write_kv, the same writes, with the check for skipped slots made on the host
    (a CPU step has none: only a CUDA-graph batch pads)."""
    if (slots.numpy() < 0).any():
        reference.write_kv(k_cache, v_cache, k, v, slots)
        return
    kvh, d = k_cache.shape[2], k_cache.shape[3]
    slots = slots.long()
    k_cache.view(-1, kvh, d).index_copy_(0, slots, k.to(k_cache.dtype))
    v_cache.view(-1, kvh, d).index_copy_(0, slots, v.to(v_cache.dtype))


def paged_attention(
    q: torch.Tensor,  # [N, H, D] packed queries
    k_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,  # [B, max_blocks] int
    cu_seqlens_q: torch.Tensor,  # [B + 1] int
    seq_lens: torch.Tensor,  # [B] int
    scale: float,
    window: int = 0,
    *,
    out: torch.Tensor | None = None,  # [N, H, D]; rows of no sequence are left as they are
    max_seq_len: int | None = None,  # launch hints of the GPU kernels; unused here
    num_splits: int | None = None,
    workspace: torch.Tensor | None = None,
) -> torch.Tensor:  # [N, H, D]
    """Causal (optionally sliding-window) attention over a paged K/V cache (see reference.py)."""
    out = torch.empty_like(q) if out is None else out
    cu, lens = cu_seqlens_q.tolist(), seq_lens.tolist()
    seqs = [(b, cu[b], cu[b + 1]) for b in range(len(lens)) if cu[b + 1] > cu[b]]
    if not seqs:
        return out
    tables = block_tables.numpy()  # a CPU tensor: its memory, read on the host
    if all(hi - lo == 1 for _, lo, hi in seqs):
        _decode(q, k_cache, v_cache, tables, lens, seqs, scale, window, out)
        return out
    for b, lo, hi in seqs:
        out[lo:hi] = _attend_chunk(q[lo:hi], k_cache, v_cache, tables[b], lens[b], scale, window)
    return out


def loop_attention(
    q: torch.Tensor,  # [N, H, D] post-RoPE queries of a loop >= 1
    k_cache: torch.Tensor,  # loop 0's cache of this layer
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    wk_cache: torch.Tensor,  # this loop's window cache of this layer
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
) -> torch.Tensor:  # [N, H, D]
    """LoopAttention, g * global + (1 - g) * local (see reference.loop_attention)."""
    glob = paged_attention(q, k_cache, v_cache, block_tables, cu_seqlens_q, seq_lens, scale)
    local = paged_attention(q, wk_cache, wv_cache, window_block_tables, cu_seqlens_q, seq_lens, scale, window)
    g = loop_gate(q, gate_weight, gate_bias)
    mixed = g * glob + (1 - g) * local
    if out is None:
        return mixed
    lo, hi = int(cu_seqlens_q[0]), int(cu_seqlens_q[-1])
    out[lo:hi] = mixed[lo:hi]
    return out


def _key_span(seq_len: int, first_q: int, window: int, block_size: int) -> tuple[int, int, int]:
    """(first block, blocks, first key's row in them) of the keys queries from `first_q` on see."""
    lo = max(0, first_q - window + 1) if window else 0  # earliest key any of the queries sees
    first = lo // block_size
    return first, (seq_len - 1) // block_size + 1 - first, lo - first * block_size


def key_rows(k_cache: torch.Tensor, v_cache: torch.Tensor, blocks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole blocks [k] of the caches -> their rows [k * block_size, KVH, D], contiguous: views
    of the caches when the ids are consecutive (ascending), else copies (`index_select`)."""
    first = int(blocks[0])
    if int(blocks[-1]) - first == len(blocks) - 1 and (len(blocks) < 3 or bool((np.diff(blocks) == 1).all())):
        return k_cache[first:first + len(blocks)].flatten(0, 1), v_cache[first:first + len(blocks)].flatten(0, 1)
    index = torch.from_numpy(blocks)
    return k_cache.index_select(0, index).flatten(0, 1), v_cache.index_select(0, index).flatten(0, 1)


def _decode(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, tables: np.ndarray,
    lens: list[int], seqs: list[tuple[int, int, int]], scale: float, window: int, out: torch.Tensor,
) -> None:
    """One query per sequence: every key read is visible, so no mask (an all-true mask gives
    the same bits). One attention call per sequence: a batched call rounds differently from
    the reference's per-sequence calls."""
    bs, kvh, d = k_cache.shape[1], k_cache.shape[2], k_cache.shape[3]
    h = q.shape[1]
    for b, lo, _ in seqs:
        first, count, skip = _key_span(lens[b], lens[b] - 1, window, bs)
        keys = slice(skip, lens[b] - first * bs)
        k, v = key_rows(k_cache, v_cache, tables[b, first:first + count])
        k, v = k[keys], v[keys]  # [S, KVH, D]
        folded = q[lo:lo + 1].view(1, kvh, h // kvh, d)  # [1, KVH, G, D], as the reference folds
        o = F.scaled_dot_product_attention(folded, k.transpose(0, 1)[None], v.transpose(0, 1)[None], scale=scale)
        out[lo:lo + 1] = o.reshape(1, h, d)


def _attend_chunk(
    q: torch.Tensor,  # [T, H, D]
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    table: np.ndarray,  # [max_blocks]
    seq_len: int,
    scale: float,
    window: int,
) -> torch.Tensor:  # [T, H, D]
    """The reference's `_attend_one` over whole blocks (same keys, same mask)."""
    bs = k_cache.shape[1]
    first, count, skip = _key_span(seq_len, seq_len - q.shape[0], window, bs)
    size = seq_len - (first * bs + skip)
    k, v = key_rows(k_cache, v_cache, table[first:first + count])
    k, v = k[skip:skip + size].transpose(0, 1), v[skip:skip + size].transpose(0, 1)  # [KVH, S, D]
    return attend_keys(q, k, v, first * bs + skip, seq_len, scale, window)
