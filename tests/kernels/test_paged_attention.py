"""Triton paged attention against the plain-torch reference (fresh random inputs per case)."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import ATTENTION_DTYPES, BOUNDS, ON_GPU, make_paged_case, poisoned_like, rel_err

from loopls.kernels import reference
from loopls.kernels.ops import attention_workspace_numel

LONG = 16_384 if ON_GPU else 700  # a long context the interpreter still runs in seconds

# (seq_lens, q_lens, window, block_size, heads, kv_heads, head_dim, num_splits)
CASES = {
    "prefill-from-0": ([40, 17], [40, 17], 0, 16, 10, 2, 64, None),
    "chunks-on-cached-prefix": ([70, 33, 5], [20, 1, 5], 0, 32, 16, 2, 64, None),
    "decode-ragged-gqa5-d128": ([1, 47, 130], [1, 1, 1], 0, 16, 10, 2, 128, None),
    "decode-split-gqa8": ([1, 47, 130, 64], [1, 1, 1, 1], 0, 16, 16, 2, 64, 4),
    "decode-mha-split-d128": ([300, 9], [1, 1], 0, 32, 4, 4, 128, 3),
    "window-crossing-blocks": ([75, 40], [30, 1], 20, 16, 4, 4, 64, None),
    "window-decode-split": ([200, 37], [1, 1], 24, 16, 10, 2, 64, 3),
    "chunk-longer-than-window": ([90], [50], 7, 16, 16, 2, 64, None),
    "prefill-split": ([40, 13], [5, 3], 0, 16, 10, 2, 64, 2),
    "empty-sequence-in-batch": ([30, 12, 50], [4, 0, 3], 0, 16, 10, 2, 64, None),
    "block-larger-than-tile": ([300, 129], [1, 2], 0, 128, 8, 1, 64, None),
    "long-decode": ([LONG, 3], [1, 1], 0, 16, 10, 2, 128, None),
    "long-prefill-chunk-window": ([LONG], [64], 48, 16, 10, 2, 64, None),
    # Prefill kernel (prefill_tiles.py): interior tiles (unmasked) vs diagonal / window-edge
    # tiles, chunks that are no multiple of the query block or the key tile, prefixes.
    "interior-and-diagonal-tiles-gqa5-d128": ([300], [300], 0, 16, 10, 2, 128, None),
    "chunks-not-multiple-of-tile": ([77, 150], [77, 150], 0, 16, 8, 2, 64, None),
    "chunk-on-long-prefix": ([700, 90], [45, 90], 0, 16, 10, 2, 64, None),
    "window-edges-and-interior": ([420, 371, 262], [150, 75, 100], 90, 16, 10, 2, 64, None),
    "window-narrower-than-query-block": ([260, 61], [120, 61], 10, 8, 10, 2, 64, None),
    "prefill-tile-inside-a-block": ([400, 129], [200, 129], 0, 128, 8, 1, 64, None),
    "window-tile-inside-a-block": ([333], [140], 90, 128, 8, 2, 64, None),
    "prefill-padded-head-dim": ([130, 20], [130, 20], 0, 16, 6, 2, 96, None),
    "block-not-a-power-of-two": ([100, 50], [60, 50], 30, 24, 10, 2, 64, None),
}


@pytest.mark.parametrize("dtype", ATTENTION_DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_matches_reference(kernels, device, generator, case, dtype) -> None:
    seq_lens, q_lens, window, bs, h, kvh, d, splits = CASES[case]
    c = make_paged_case(
        seq_lens, q_lens, heads=h, kv_heads=kvh, head_dim=d, block_size=bs, dtype=dtype,
        device=device, window=window, generator=generator,
    )
    out = poisoned_like(c.q)
    got = kernels.paged_attention.paged_attention(*c.args(), window, out=out, num_splits=splits)
    ref = reference.paged_attention(*c.fp32().args(), window)
    assert got is out
    assert rel_err(out, ref) < BOUNDS[dtype]


@pytest.mark.parametrize(
    "case", ["prefill-from-0", "chunk-on-long-prefix", "window-edges-and-interior", "chunk-longer-than-window"]
)
def test_legacy_prefill_path_matches_reference(kernels, device, generator, case) -> None:
    # The split-capable kernel still serves prefill with splits, and the benchmark's "before".
    seq_lens, q_lens, window, bs, h, kvh, d, _ = CASES[case]
    dtype = ATTENTION_DTYPES[0]
    c = make_paged_case(
        seq_lens, q_lens, heads=h, kv_heads=kvh, head_dim=d, block_size=bs, dtype=dtype,
        device=device, window=window, generator=generator,
    )
    out = poisoned_like(c.q)
    kernels.paged_attention.paged_attention(*c.args(), window, out=out, legacy_prefill=True)
    assert rel_err(out, reference.paged_attention(*c.fp32().args(), window)) < BOUNDS[dtype]


@pytest.mark.parametrize("splits", [1, 2, 5])
def test_split_count_changes_nothing_but_rounding(kernels, device, generator, splits) -> None:
    c = make_paged_case(
        [150, 90, 1], [1, 1, 1], heads=10, kv_heads=2, head_dim=64, block_size=16,
        dtype=ATTENTION_DTYPES[-1], device=device, generator=generator,
    )
    ref = reference.paged_attention(*c.fp32().args())
    got = kernels.paged_attention.paged_attention(*c.args(), num_splits=splits)
    assert rel_err(got, ref) < BOUNDS[c.q.dtype]


def test_rows_of_no_sequence_are_left_alone(kernels, device, generator) -> None:
    # A CUDA-graph batch padded past its sequences: rows N' .. N-1 belong to no sequence.
    c = make_paged_case(
        [33, 20], [1, 1], heads=10, kv_heads=2, head_dim=64, block_size=16,
        dtype=ATTENTION_DTYPES[0], device=device, generator=generator,
    )
    q = torch.cat([c.q, torch.randn_like(c.q)])  # 2 live rows, 2 padding rows
    out = poisoned_like(q)
    kernels.paged_attention.paged_attention(q, *c.args()[1:], out=out, num_splits=3)
    ref = reference.paged_attention(*c.fp32().args())
    assert rel_err(out[:2], ref) < BOUNDS[q.dtype]
    assert torch.isnan(out[2:]).all()


def test_caller_workspace_is_used_and_checked(kernels, device, generator) -> None:
    c = make_paged_case(
        [100, 64], [1, 1], heads=10, kv_heads=2, head_dim=64, block_size=16,
        dtype=ATTENTION_DTYPES[0], device=device, generator=generator,
    )
    need = attention_workspace_numel(2, 10, 64, 4)
    ws = torch.full((need,), float("nan"), device=device)
    got = kernels.paged_attention.paged_attention(*c.args(), num_splits=4, workspace=ws)
    assert not torch.isnan(ws).all()  # the partials went there
    assert rel_err(got, reference.paged_attention(*c.fp32().args())) < BOUNDS[c.q.dtype]
    with pytest.raises(ValueError, match="workspace must be a contiguous float32 tensor of at least"):
        kernels.paged_attention.paged_attention(*c.args(), num_splits=4, workspace=ws[: need - 1])
