"""Launch plans of the attention kernels: tile shapes, split count, grid and workspace.

Everything here is decided from tensor shapes and the caller's hints, never from tensor
values, so the same call launches the same grid every time (CUDA-graph capture needs that)
and no host sync is ever needed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

# Splits of one (sequence, KV head) never get fewer keys than this: below it the merge costs
# more than the parallelism buys.
MIN_KEYS_PER_SPLIT = 256
MAX_SPLITS = 64
# Tile rows of a prefill program on the split-capable kernel (chunks with num_splits > 1, and
# the legacy path the benchmark compares against): 128 query rows (tokens x grouped heads) per
# K/V tile read; 64 for LoopAttention, which holds two accumulators there.
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


def decode_splits(
    num_seqs: int, num_kv_heads: int, max_seq_len: int, device: torch.device, multiprocessors: int | None = None
) -> int:
    """Split count for a decode step: about two programs per multiprocessor, each with at least
    MIN_KEYS_PER_SPLIT keys of the longest sequence. `multiprocessors` defaults to the device's.

    The count is a power of two (few distinct merge kernels to compile, and graphs of one batch
    size share it), the one nearest to the count wanted on a log scale. Rounding down instead
    halved the grid whenever the wanted count was just above a power of two: 3 wanted at 24 or
    32 sequences over 4 KV heads (a TP=2 rank of the 14B and 40B shapes) gave 2 splits, 192 or
    256 programs for 264 slots, and each sequence's keys in two halves. As every sequence is
    cut into the same number of shares, the longest sequence's share sets the kernel's time:
    at 24 and 32 sequences of 8K-64K contexts the step took as long as with 2 splits at 32."""
    sms = multiprocessors or _multiprocessors(torch.device(device))
    programs = max(1, num_seqs * num_kv_heads)
    want = -(-2 * sms // programs)
    nearest = 1 << round(math.log2(want))
    most = max(1, max_seq_len // MIN_KEYS_PER_SPLIT)
    return 1 << (max(1, min(nearest, most, MAX_SPLITS)).bit_length() - 1)


def default_splits(
    q: torch.Tensor,  # [N, H, D]
    k_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    block_tables: torch.Tensor,  # [B, max_blocks]
    max_seq_len: int | None,
    *,
    window: int = 0,
    sets: int = 1,
    multiprocessors: int | None = None,
) -> int:
    """Key splits of a call whose caller fixed none.

    A decode step splits to fill the GPU (`decode_splits`). So does a short chunk over a long
    cached prefix (a prompt that hit the prefix cache, a few tokens typed after 32K of
    context): its query tiles alone are a few programs per KV head, each streaming every key
    of the sequence, which leaves most multiprocessors idle. A chunk with enough query tiles
    to fill the GPU (a cold prefill) is not split."""
    n, h, _ = q.shape
    b, kv_heads = block_tables.shape[0], k_cache.shape[2]
    longest = max_seq_len if max_seq_len is not None else block_tables.shape[1] * k_cache.shape[1]
    if window and sets == 1:
        longest = min(longest, window)  # a windowed query reads at most W keys
    sms = multiprocessors or _multiprocessors(torch.device(q.device))
    if n <= b:
        return decode_splits(b, kv_heads, longest, q.device, sms)
    group = h // kv_heads
    block_m = max(PREFILL_BLOCK_M if sets == 1 else LOOP_PREFILL_BLOCK_M, triton_next_pow2(group))
    query_tiles = n // max(1, block_m // group) + b  # the grid's first axis (launch.grid)
    if query_tiles * kv_heads >= sms:
        return 1
    return decode_splits(query_tiles, kv_heads, longest, q.device, sms)


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
        num_splits = default_splits(q, k_cache, block_tables, max_seq_len, window=window, sets=sets)
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


@dataclass(frozen=True)
class PrefillLaunch:
    """Launch of the prefill kernels (prefill.py): one program per query block and KV head."""

    block_q: int  # query tokens per program
    block_m: int  # tile rows: block_q x group heads, padded to a power of two
    block_d: int  # head_dim padded to a power of two
    tile_n: int  # keys per tile
    num_warps: int
    num_stages: int  # software-pipeline depth of the K/V tile loads

    def grid(self, num_tokens: int, num_seqs: int, num_kv_heads: int) -> tuple[int, int]:
        # Upper bound of the query blocks of all sequences (see attention_tiles.py).
        return (num_tokens // self.block_q + num_seqs, num_kv_heads)


# (block_m, tile_n, num_warps, num_stages) of the prefill kernels, by padded head_dim: for long
# chunks, for short ones (fewer query rows per sequence than a long tile holds: a 128-row tile
# would be mostly padding), and for LoopAttention (two online softmaxes: more live registers).
# Pipeline depth 5 is meant to keep two K/V tiles in flight behind the block-table load that
# addresses them. Not yet measured on a GPU. Compiled offline for sm_90a (Triton 3.9, ptxas -v)
# the 128x64, 8-warp tiles spill registers (264 bytes a thread in the paged kernel, about 1 KB
# in the Loop kernel) where 128x32 and 64x64 at 8 warps do not, and 3 and 5 stages take the
# same shared memory (48 KiB): the pipelining may not happen. `bench/kernels_bench.py
# --prefill-variants` times these alternatives; this table should follow its numbers.
PREFILL_CONFIGS = {
    64: {"long": (128, 64, 8, 5), "short": (64, 64, 4, 5), "loop": (128, 64, 8, 5)},
    128: {"long": (128, 64, 8, 5), "short": (64, 64, 4, 5), "loop": (128, 64, 8, 5)},
    256: {"long": (64, 32, 8, 5), "short": (64, 32, 8, 5), "loop": (64, 16, 8, 5)},
}


# Shared memory a prefill program may plan for: the H100/H200 give a block 227 KiB; Triton's
# own buffers (layout conversions, the softmax reductions) need some of it.
PREFILL_SHARED_BYTES = 200 * 1024


def fit_shared_memory(
    block_m: int, tile_n: int, stages: int, block_d: int, elem_bytes: int, min_block_m: int
) -> tuple[int, int, int]:
    """Shrink a prefill config until its tiles fit PREFILL_SHARED_BYTES: the query tile plus
    `stages` buffered K and V tiles. The tables are tuned for 2-byte dtypes; fp32 needs twice
    the room (a 128x64 tile at 5 stages asked for 257 KiB of the 227 an H200 has).
    Fewer stages first, then narrower key tiles, then fewer query rows."""

    def need(m: int, n: int, s: int) -> int:
        return (m + 2 * s * n) * block_d * elem_bytes

    while need(block_m, tile_n, stages) > PREFILL_SHARED_BYTES and stages > 2:
        stages -= 1
    while need(block_m, tile_n, stages) > PREFILL_SHARED_BYTES and tile_n > 16:
        tile_n //= 2
    while need(block_m, tile_n, stages) > PREFILL_SHARED_BYTES and block_m // 2 >= max(16, min_block_m):
        block_m //= 2
    return block_m, tile_n, stages


def plan_prefill(
    q: torch.Tensor,  # [N, H, D]
    k_cache: torch.Tensor,  # [num_blocks, block_size, KVH, D]
    block_tables: torch.Tensor,  # [B, max_blocks]
    num_splits: int | None,
    *,
    loop: bool = False,
    window_block_size: int | None = None,
) -> PrefillLaunch | None:
    """The prefill kernels' launch, or None where the split-capable kernel runs instead: a
    decode step (one query per sequence), a caller's split count > 1, or cache blocks that
    are not a power of two (tiles are whole blocks)."""
    n, h, d = q.shape
    b = block_tables.shape[0]
    sizes = (k_cache.shape[1],) if window_block_size is None else (k_cache.shape[1], window_block_size)
    if n <= b or (num_splits is not None and num_splits > 1) or any(s & (s - 1) for s in sizes):
        return None
    group = h // k_cache.shape[2]
    block_d = triton_next_pow2(d)
    table = PREFILL_CONFIGS[min(max(block_d, 64), 256)]
    # Chunk length from shapes alone (no host sync): the mean query rows per sequence.
    kind = "loop" if loop else ("long" if n * group >= 128 * b else "short")
    block_m, tile_n, warps, stages = table[kind]
    block_m = max(block_m, triton_next_pow2(group))
    block_m, tile_n, stages = fit_shared_memory(block_m, tile_n, stages, block_d, q.element_size(), triton_next_pow2(group))
    return PrefillLaunch(
        block_q=block_m // group, block_m=block_m, block_d=block_d, tile_n=tile_n,
        num_warps=warps, num_stages=stages,
    )
