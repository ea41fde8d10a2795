"""Fused LoopAttention against the reference (two paged attentions, the gate and the mix)."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import ATTENTION_DTYPES, BOUNDS, ON_GPU, make_paged_case, poisoned_like, rel_err

from loopls.kernels import reference

LONG = 16_384 if ON_GPU else 600

# (seq_lens, q_lens, window, global block_size, window block_size, heads, kv_heads, head_dim, num_splits)
CASES = {
    "prefill-shorter-than-window": ([40, 17], [40, 17], 64, 16, 16, 10, 2, 64, None),
    "prefill-longer-than-window": ([90], [90], 24, 16, 16, 16, 2, 64, None),
    "chunks-window-crossing-blocks": ([75, 52, 9], [30, 1, 9], 20, 16, 32, 4, 4, 64, None),
    "decode-ragged-gqa5-d128": ([1, 47, 130], [1, 1, 1], 8, 16, 16, 10, 2, 128, None),
    "decode-split-gqa8": ([150, 64, 3], [1, 1, 1], 16, 32, 16, 16, 2, 64, 4),
    "decode-split-window-larger-than-context": ([90, 40], [1, 1], 128, 16, 16, 10, 2, 64, 3),
    "prefill-split": ([40, 13], [5, 3], 12, 16, 16, 10, 2, 64, 2),
    "empty-sequence-in-batch": ([30, 12, 50], [4, 0, 3], 16, 16, 16, 10, 2, 64, None),
    "long-decode": ([LONG], [1], 64, 16, 16, 10, 2, 128, None),
    # Prefill kernel: interior / edge tiles of both passes, prefixes, block sizes around the tile.
    "prefill-interior-tiles-gqa5-d128": ([300], [300], 64, 16, 16, 10, 2, 128, None),
    "chunk-on-prefix-window-crossing-tiles": ([520, 33], [140, 33], 100, 16, 32, 8, 2, 64, None),
    "window-narrower-than-query-block": ([200], [200], 5, 16, 8, 10, 2, 64, None),
    "window-tile-inside-a-block": ([300], [170], 70, 128, 128, 8, 2, 64, None),
}


def _loop_case(case, dtype, device, generator):
    seq_lens, q_lens, window, bs, wbs, h, kvh, d, splits = CASES[case]
    kw = dict(heads=h, kv_heads=kvh, head_dim=d, dtype=dtype, device=device, generator=generator)
    glob = make_paged_case(seq_lens, q_lens, block_size=bs, **kw)
    # the loop's window cache: blocks before every query's window are freed (-1)
    local = make_paged_case(seq_lens, q_lens, block_size=wbs, window=window, **kw)
    gate_w = (torch.randn(h, d, generator=generator) * d**-0.5).to(dtype).to(device)
    gate_b = torch.randn(h, generator=generator).to(dtype).to(device)
    return glob, local, window, gate_w, gate_b, splits


def _args(glob, local, window, gate_w, gate_b, fp32=False):
    g, l = (glob.fp32(), local.fp32()) if fp32 else (glob, local)
    cast = (lambda t: t.float()) if fp32 else (lambda t: t)
    return (
        g.q, g.k_cache, g.v_cache, g.block_tables, l.k_cache, l.v_cache, l.block_tables,
        g.cu_seqlens_q, g.seq_lens, g.scale, window, cast(gate_w), cast(gate_b),
    )


@pytest.mark.parametrize("dtype", ATTENTION_DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_matches_reference(kernels, device, generator, case, dtype) -> None:
    glob, local, window, gate_w, gate_b, splits = _loop_case(case, dtype, device, generator)
    out = poisoned_like(glob.q)
    got = kernels.loop_attention.loop_attention(
        *_args(glob, local, window, gate_w, gate_b), out=out, num_splits=splits
    )
    ref = reference.loop_attention(*_args(glob, local, window, gate_w, gate_b, fp32=True))
    assert got is out
    assert rel_err(out, ref) < BOUNDS[dtype]


@pytest.mark.parametrize("case", ["prefill-longer-than-window", "chunk-on-prefix-window-crossing-tiles"])
def test_legacy_prefill_path_matches_reference(kernels, device, generator, case) -> None:
    dtype = ATTENTION_DTYPES[0]
    glob, local, window, gate_w, gate_b, _ = _loop_case(case, dtype, device, generator)
    out = poisoned_like(glob.q)
    kernels.loop_attention.loop_attention(*_args(glob, local, window, gate_w, gate_b), out=out, legacy_prefill=True)
    ref = reference.loop_attention(*_args(glob, local, window, gate_w, gate_b, fp32=True))
    assert rel_err(out, ref) < BOUNDS[dtype]


def test_gate_mixes_the_two_attentions(kernels, device, generator) -> None:
    # A saturated gate must give pure global (+) or pure local (-) attention.
    glob, local, window, gate_w, gate_b, _ = _loop_case("chunks-window-crossing-blocks", ATTENTION_DTYPES[-1], device, generator)
    for sign, cache, ref_window in ((1, glob, 0), (-1, local, window)):
        bias = torch.full_like(gate_b, 60.0 * sign)
        got = kernels.loop_attention.loop_attention(*_args(glob, local, window, torch.zeros_like(gate_w), bias))
        ref = reference.paged_attention(glob.q.float(), *cache.fp32().args()[1:], ref_window)
        assert rel_err(got, ref) < BOUNDS[got.dtype]
