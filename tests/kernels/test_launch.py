"""Split decisions of the attention launches (shapes only: no kernel runs here)."""

from __future__ import annotations

import torch

from loopls.kernels.launch import default_splits

H200_SMS = 132


def _splits(num_tokens: int, num_seqs: int, context: int, *, sets: int = 1, window: int = 0) -> int:
    # IQuest-7B attention: 40 query heads over 8 KV heads of 128, blocks of 16 tokens.
    q = torch.empty(num_tokens, 40, 128)
    k_cache = torch.empty(1, 16, 8, 128)
    tables = torch.empty(num_seqs, -(-context // 16), dtype=torch.int32)
    return default_splits(q, k_cache, tables, None, window=window, sets=sets, multiprocessors=H200_SMS)


def test_a_decode_step_splits_long_sequences_to_fill_the_gpu() -> None:
    assert _splits(1, 1, 32768) == 32  # 8 programs -> 33 wanted -> the power of two below
    assert _splits(32, 32, 2048) == 2  # 256 programs: two per multiprocessor wanted


def test_the_split_count_is_the_nearest_power_of_two_not_the_one_below() -> None:
    # A TP=2 rank of the 14B/40B shapes holds 4 KV heads: 24 or 32 sequences want 3 splits.
    # Rounding down gave 2 (192 or 256 programs for 264 slots); 4 is nearer on a log scale.
    k_cache = torch.empty(1, 16, 4, 128)
    for seqs in (24, 32):
        tables = torch.empty(seqs, 65536 // 16, dtype=torch.int32)
        q = torch.empty(seqs, 20, 128)
        assert default_splits(q, k_cache, tables, None, multiprocessors=H200_SMS) == 4
    tables = torch.empty(16, 65536 // 16, dtype=torch.int32)
    assert default_splits(torch.empty(16, 20, 128), k_cache, tables, None, multiprocessors=H200_SMS) == 4  # 5 wanted


def test_a_short_chunk_over_a_long_cached_prefix_is_split() -> None:
    # 64 new tokens after 32K cached: 3 query tiles x 8 KV heads = 24 programs unsplit.
    assert _splits(64, 1, 32768 + 64) == 8
    assert _splits(64, 1, 32768 + 64, sets=2) == 8  # Loop tiles hold 64 rows: 6 x 8 programs, 6 wanted


def test_a_cold_prefill_and_short_sequences_are_not_split() -> None:
    assert _splits(16384, 1, 16384) == 1  # 656 query tiles per KV head fill the GPU
    assert _splits(64, 1, 64) == 1  # too few keys to share out
    assert _splits(64, 1, 32768 + 64, window=256) == 1  # a window reads at most W keys


def test_prefill_tiles_fit_the_shared_memory_of_a_block() -> None:
    from loopls.kernels.launch import PREFILL_CONFIGS, PREFILL_SHARED_BYTES, fit_shared_memory

    # The bf16 tables are kept as tuned; fp32 (the engine's exact-comparison runs) shrinks.
    for block_d, table in PREFILL_CONFIGS.items():
        for block_m, tile_n, _, stages in table.values():
            fitted = fit_shared_memory(block_m, tile_n, stages, block_d, 4, 8)
            assert (fitted[0] + 2 * fitted[2] * fitted[1]) * block_d * 4 <= PREFILL_SHARED_BYTES
    assert fit_shared_memory(128, 64, 5, 128, 2, 8) == (128, 64, 5)
    assert fit_shared_memory(128, 64, 5, 128, 4, 8) == (128, 64, 2)
    assert fit_shared_memory(128, 64, 5, 256, 4, 8) == (128, 16, 2)
