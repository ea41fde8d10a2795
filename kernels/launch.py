"""Launch plans of the attention kernels: tile shapes, split count, grid and workspace.

Everything here is decided from tensor shapes and the caller's hints, never from tensor
values, so the same call launches the same grid every time (CUDA-graph capture needs that)
and no host sync is ever needed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

# Splits of one (sequence, KV head) never get fewer keys than this: below it the merge costs
# more than the parallelism buys.
MIN_KEYS_PER_SPLIT = 256
MAX_SPLITS = 64
# Tile rows of a prefill program: 128 query rows (tokens x grouped heads) per K/V tile read;
# 64 for LoopAttention, which holds two accumulators (at 128 it spills registers on sm_90).
PREFILL_BLOCK_M = 128
LOOP_PREFILL_BLOCK_M = 64
TILE_N = 64


@dataclass(frozen=True)
class AttentionLaunch:
    block_q: int  # query tokens per program
    block_m: int  # tile rows (block_q x group heads, padded to a power of two >= 16)
    block_d: int  # head_dim padded to a power of two
    tile_n: int  # keys per tile
    num_splits: int  # key splits per query block (1: no merge step)
    num_warps: int
    num_stages: int
    workspace: torch.Tensor | None  # flat fp32 buffer for the split partials

    def grid(self, num_tokens: int, num_seqs: int, num_kv_heads: int) -> tuple[int, int, int]:
        # Upper bound of the query blocks of all sequences (see attention_tiles.py).
        return (num_tokens // self.block_q + num_seqs, num_kv_heads, self.num_splits)

    def partials(
        self, num_tokens: int, num_heads: int, head_dim: int, sets: int = 1
    ) -> tuple[torch.Tensor, ...]:
        """Views of the workspace: (o, ml) per set of partials, o [N, S, H, D], ml [N, S, H, 2]."""
        if self.num_splits == 1:
            return (self.workspace,) * (2 * sets)  # never touched: the kernel writes `out`
        n_o = num_tokens * self.num_splits * num_heads * head_dim
        n_ml = num_tokens * self.num_splits * num_heads * 2
        views = []
        for i in range(sets):
            base = i * (n_o + n_ml)
            views.append(self.workspace[base : base + n_o])
            views.append(self.workspace[base + n_o : base + n_o + n_ml])
        return tuple(views)


def workspace_numel(num_tokens: int, num_heads: int, head_dim: int, num_splits: int, sets: int = 1) -> int:
    """fp32 elements of the split workspace (`sets` = 2 for LoopAttention: global and local)."""
    if num_splits <= 1:
        return 0
    return sets * num_tokens * num_splits * num_heads * (head_dim + 2)


@functools.lru_cache(maxsize=None)
def _multiprocessors(device: torch.device) -> int:
    # Cached: a hardware fact of the device, read once per device.
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def decode_splits(num_seqs: int, num_kv_heads: int, max_seq_len: int, device: torch.device) -> int:
    """Split count for a decode step: up to two programs per multiprocessor, each with at least
    MIN_KEYS_PER_SPLIT keys of the longest sequence."""
    programs = max(1, num_seqs * num_kv_heads)
    want = -(-2 * _multiprocessors(torch.device(device)) // programs)
    most = max(1, max_seq_len // MIN_KEYS_PER_SPLIT)
    # a power of two: few distinct merge kernels to compile, and graphs of one batch size share it
    return 1 << (max(1, min(want, most, MAX_SPLITS)).bit_length() - 1)


def plan_attention(
    q: torch.Tensor,  # [N, H, D]
    k_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    block_tables: torch.Tensor,  # [B, max_blocks]
    max_seq_len: int | None,
    num_splits: int | None,
    workspace: torch.Tensor | None,
    *,
    window: int = 0,
    sets: int = 1,
) -> AttentionLaunch:
    n, h, d = q.shape
    b = block_tables.shape[0]
    group = h // k_cache.shape[2]
    decode = n <= b  # one query per sequence (a decode step): no query rows to tile
    if decode:
        block_m = max(16, triton_next_pow2(group))
        block_q = 1
    else:
        block_m = max(PREFILL_BLOCK_M if sets == 1 else LOOP_PREFILL_BLOCK_M, triton_next_pow2(group))
        block_q = block_m // group
    if num_splits is None:
        longest = max_seq_len if max_seq_len is not None else block_tables.shape[1] * k_cache.shape[1]
        if window and sets == 1:
            longest = min(longest, window)  # a windowed query reads at most W keys
        num_splits = decode_splits(b, k_cache.shape[2], longest, q.device) if decode else 1
    num_splits = max(1, int(num_splits))
    need = workspace_numel(n, h, d, num_splits, sets)
    if num_splits > 1:
        if workspace is None:
            workspace = torch.empty(need, dtype=torch.float32, device=q.device)
        elif workspace.dtype != torch.float32 or workspace.numel() < need or not workspace.is_contiguous():
            raise ValueError(
                f"workspace must be a contiguous float32 tensor of at least {need} elements "
                f"(got {workspace.dtype}, {workspace.numel()} elements)"
            )
    return AttentionLaunch(
        block_q=block_q,
        block_m=block_m,
        block_d=triton_next_pow2(d),
        tile_n=TILE_N,
        num_splits=num_splits,
        num_warps=4 if decode else 8,
        num_stages=2,
        workspace=workspace if num_splits > 1 else q,
    )


def triton_next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()
