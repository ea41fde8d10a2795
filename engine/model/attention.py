"""Attention of a decoder layer over a paged K/V store: the module that calls the attention kernels.

Every K/V store, the single-sequence `KVCache` and the serving engine's block pool alike,
presents its caches in the kernels' paged layout (`kernels/reference.py`): per layer
`[num_blocks, block_size, KVH, D]`, addressed through block tables. The queries of all
sequences of a forward are packed (`[N, H, D]`, sequence b owning rows
`cu_seqlens_q[b]:cu_seqlens_q[b + 1]`, its last positions). A store only says where things
are (`AttentionMetadata`, `caches`); the maths is here.

Loop models: loop 0 writes the global cache and attends causally over it. A later loop
writes its own K/V into a window cache (same layout, own block tables) and runs
LoopAttention: global attention over loop 0's cache, sliding-window attention over its own,
mixed per head by the gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from loopls.kernels import ops


@dataclass
class AttentionMetadata:
    """Where the new tokens of one forward go and which keys each sequence sees."""

    cu_seqlens_q: torch.Tensor  # [B + 1] int
    seq_lens: torch.Tensor  # [B] int, keys per sequence including the new tokens
    block_tables: torch.Tensor  # [B, max_blocks] int, into the loop-0 caches
    slots: torch.Tensor  # [N] int, loop-0 cache slot of every new token (< 0: padding)
    window_tables: tuple[torch.Tensor, ...] = ()  # per later loop: [B, max_blocks] int
    window_slots: tuple[torch.Tensor, ...] = ()  # per later loop: [N] int


class KVStore(Protocol):
    """The K/V a forward reads and writes: metadata plus the caches of (layer, loop)."""

    meta: AttentionMetadata

    def caches(self, layer: int, loop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V caches [num_blocks, block_size, KVH, D]; loop >= 1 means that loop's window."""
        ...


class PagedKV:
    """K/V blocks of every layer, `[layers, num_blocks, block_size, KVH, D]` each.

    The serving engine keeps loop 0's blocks and the later loops' window blocks in this one
    pool (one block id space, one allocator, one prefix cache)."""

    def __init__(
        self, layers: int, num_blocks: int, block_size: int, kv_heads: int, head_dim: int,
        dtype: torch.dtype, device: torch.device | str = "cpu",
    ) -> None:
        shape = (layers, num_blocks, block_size, kv_heads, head_dim)
        # Zeros, not empty: a padding row of a CUDA-graph batch reads block 0, which must be finite.
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.block_size = block_size

    @staticmethod
    def block_bytes(layers: int, block_size: int, kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        """Bytes of one block: K and V of every layer for block_size tokens."""
        return 2 * layers * block_size * kv_heads * head_dim * dtype.itemsize

    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()


@dataclass
class PagedStore:
    """A `PagedKV` plus one forward's metadata; window blocks share the pool's tensors."""

    kv: PagedKV
    meta: AttentionMetadata

    def caches(self, layer: int, loop: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.kv.k[layer], self.kv.v[layer]


def attend(
    store: KVStore,
    layer: int,
    loop: int,
    q: torch.Tensor,  # [N, H, D] post-RoPE
    k: torch.Tensor,  # [N, KVH, D] post-RoPE
    v: torch.Tensor,  # [N, KVH, D]
    scale: float,
    window: int,  # the Loop window W (loops >= 1 only)
    gate: torch.nn.Module | None,  # loops >= 1: the layer's LoopGate (weight [H, D], bias [H])
) -> torch.Tensor:  # [N, H, D]
    """Write this layer's new K/V, then attend: causal over loop 0's cache for loop 0,
    LoopAttention (global + window + gate) for a later loop."""
    meta = store.meta
    k_cache, v_cache = store.caches(layer, 0)
    if loop == 0:
        ops.write_kv(k_cache, v_cache, k, v, meta.slots)
        return ops.paged_attention(
            q, k_cache, v_cache, meta.block_tables, meta.cu_seqlens_q, meta.seq_lens, scale
        )
    wk_cache, wv_cache = store.caches(layer, loop)
    ops.write_kv(wk_cache, wv_cache, k, v, meta.window_slots[loop - 1])
    return ops.loop_attention(
        q, k_cache, v_cache, meta.block_tables, wk_cache, wv_cache, meta.window_tables[loop - 1],
        meta.cu_seqlens_q, meta.seq_lens, scale, window, gate.weight, gate.bias,
    )


def graph_capturable(device: torch.device) -> bool:
    """Whether a forward on `device` can be captured in a CUDA graph: the kernels' Triton path
    runs without host syncs and skips padding slots (-1); the plain-torch reference reads
    sequence lengths on the host, so it cannot be captured."""
    available = getattr(ops, "triton_available", None)  # present on the dispatching module only
    return device.type == "cuda" and available is not None and bool(available())
