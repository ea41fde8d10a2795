"""The CPU path of the attention ops (kernels/cpu.py) against the plain-torch reference: the
same bits, fp32, for K/V writes, decode steps (batched and ragged), prefill chunks and Loop
windows, over blocks scattered in the pool (gathered) and over tables of consecutive block ids
(read in place)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kernel_cases import PagedCase, make_paged_case, poisoned_like

from loopls.kernels import cpu, ops, reference

# (seq_lens, q_lens, window, block_size, heads, kv_heads, head_dim)
CASES = {
    "decode-one-sequence": ([700], [1], 0, 16, 6, 2, 64),
    "decode-one-length-batched": ([130, 130, 130], [1, 1, 1], 0, 16, 6, 2, 64),
    "decode-ragged": ([1, 47, 130, 64], [1, 1, 1, 1], 0, 16, 10, 2, 128),
    "decode-window": ([200, 37, 5], [1, 1, 1], 24, 16, 6, 2, 64),
    "decode-window-one-length": ([97, 97], [1, 1], 32, 16, 6, 2, 64),
    "decode-window-larger-than-context": ([90, 40], [1, 1], 128, 16, 10, 2, 64),
    "decode-mha": ([300, 9], [1, 1], 0, 32, 4, 4, 128),
    "prefill-from-0": ([40, 17], [40, 17], 0, 16, 10, 2, 64),
    "chunks-on-cached-prefix": ([70, 33, 5], [20, 1, 5], 0, 32, 16, 2, 64),
    "chunk-longer-than-window": ([90], [50], 7, 16, 16, 2, 64),
    "window-crossing-blocks": ([75, 40], [30, 1], 20, 16, 4, 4, 64),
    "empty-sequence-in-batch": ([30, 12, 50], [4, 0, 3], 0, 16, 10, 2, 64),
    "block-not-a-power-of-two": ([100, 50], [60, 50], 30, 24, 10, 2, 64),
}


def _case(name: str, generator: torch.Generator, window_tables: bool = False):
    seq_lens, q_lens, window, bs, h, kvh, d = CASES[name]
    return make_paged_case(
        seq_lens, q_lens, heads=h, kv_heads=kvh, head_dim=d, block_size=bs, dtype=torch.float32,
        device=torch.device("cpu"), window=window if window_tables else 0, generator=generator,
    ), window


def _laid_out(c: PagedCase, seqs: list[int]) -> PagedCase:
    """The same case with the blocks of sequences `seqs` moved to consecutive ids (in table
    order, one sequence after the other); the other sequences' blocks stay scattered."""
    tables = c.block_tables.tolist()
    front = [blk for b in seqs for blk in tables[b] if blk >= 0]
    order = front + [blk for blk in range(c.k_cache.shape[0]) if blk not in set(front)]  # new id -> old id
    new_id = {old: new for new, old in enumerate(order)}
    relabelled = torch.tensor([[new_id.get(blk, -1) for blk in row] for row in tables], dtype=c.block_tables.dtype)
    return PagedCase(c.q, c.k_cache[order], c.v_cache[order], relabelled, c.cu_seqlens_q, c.seq_lens, c.scale)


LAYOUTS = {"scattered": lambda b: [], "consecutive": lambda b: list(range(b)),
           "mixed": lambda b: list(range(0, b, 2))}


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=str)
@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_paged_attention_gives_the_reference_bits(generator, case, layout) -> None:
    c, window = _case(case, generator, window_tables=True)  # blocks before the window freed (-1)
    c = _laid_out(c, LAYOUTS[layout](len(c.seq_lens)))
    out = poisoned_like(c.q)
    got = cpu.paged_attention(*c.args(), window, out=out)
    assert got is out
    ref = reference.paged_attention(*c.args(), window)
    live = slice(int(c.cu_seqlens_q[0]), int(c.cu_seqlens_q[-1]))
    assert torch.isfinite(got[live]).all()  # no freed block or key past the end was read
    assert torch.equal(got[live], ref[live])


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=str)
@pytest.mark.parametrize("case", [name for name, spec in CASES.items() if spec[2]], ids=str)
def test_loop_attention_gives_the_reference_bits(generator, case, layout) -> None:
    glob, window = _case(case, generator)
    local, _ = _case(case, generator, window_tables=True)
    seqs = LAYOUTS[layout](len(glob.seq_lens))
    glob, local = _laid_out(glob, seqs), _laid_out(local, seqs)
    h, d = glob.q.shape[1:]
    gate_w, gate_b = torch.randn(h, d, generator=generator) * d**-0.5, torch.randn(h, generator=generator)
    args = (glob.q, glob.k_cache, glob.v_cache, glob.block_tables, local.k_cache, local.v_cache,
            local.block_tables, glob.cu_seqlens_q, glob.seq_lens, glob.scale, window, gate_w, gate_b)
    got = ops.loop_attention(*args)  # a CPU tensor: the CPU path
    assert torch.equal(got, reference.loop_attention(*args))


def test_rows_of_no_sequence_are_left_alone(generator) -> None:
    # A batch padded past its sequences (as a CUDA-graph step is): rows 2, 3 belong to none.
    c, _ = _case("decode-one-length-batched", generator)
    q = torch.cat([c.q[:2], torch.randn(2, *c.q.shape[1:], generator=generator)])
    cu, lens = torch.tensor([0, 1, 2], dtype=torch.int32), c.seq_lens[:2]
    out = poisoned_like(q)
    cpu.paged_attention(q, c.k_cache, c.v_cache, c.block_tables[:2], cu, lens, c.scale, out=out)
    assert torch.equal(out[:2], reference.paged_attention(q[:2], c.k_cache, c.v_cache, c.block_tables[:2], cu, lens,
                                                          c.scale))
    assert torch.isnan(out[2:]).all()


def test_a_decode_step_reads_only_the_blocks_it_sees() -> None:
    # Block 0 is NaN and listed after the sequence's last block and before its window:
    # neither the decode gather nor the window gather may touch it.
    k = torch.randn(6, 4, 1, 8)
    v = torch.randn(6, 4, 1, 8)
    k[0] = v[0] = float("nan")
    q = torch.randn(1, 2, 8)
    tables = torch.tensor([[0, 0, 3, 5, 0, 0]], dtype=torch.int32)  # keys 8..15 in blocks 3, 5
    cu, lens = torch.tensor([0, 1], dtype=torch.int32), torch.tensor([16], dtype=torch.int32)
    got = cpu.paged_attention(q, k, v, tables, cu, lens, 0.3, 8)
    assert torch.isfinite(got).all()
    assert torch.equal(got, reference.paged_attention(q, k, v, tables, cu, lens, 0.3, 8))


def test_consecutive_blocks_are_read_in_place_and_others_gathered() -> None:
    k_cache, v_cache = torch.randn(8, 4, 2, 16), torch.randn(8, 4, 2, 16)
    for ids in ([3], [2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 6, 7]):
        k, v = cpu.key_rows(k_cache, v_cache, np.array(ids, dtype=np.int32))
        assert k.data_ptr() == k_cache[ids[0]].data_ptr() and v.data_ptr() == v_cache[ids[0]].data_ptr()  # views
        assert torch.equal(k, k_cache[ids].flatten(0, 1)) and torch.equal(v, v_cache[ids].flatten(0, 1))
        assert k.stride() == v.stride() == (32, 16, 1)
    for ids in ([3, 2], [2, 4, 5], [1, 3, 2, 4], [5, 6, 5, 6]):  # descending, a gap, out of order
        k, v = cpu.key_rows(k_cache, v_cache, np.array(ids, dtype=np.int64))
        assert k.data_ptr() != k_cache[ids[0]].data_ptr() and v.data_ptr() != v_cache[ids[0]].data_ptr()
        assert torch.equal(k, k_cache[ids].flatten(0, 1)) and torch.equal(v, v_cache[ids].flatten(0, 1))
        assert k.stride() == v.stride() == (32, 16, 1)


@pytest.mark.parametrize("slots", [[5, 0, 63, 17], [5, -1, 40, -3]], ids=["every-slot", "skipped-slots"])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64], ids=str)
def test_write_kv_gives_the_reference_cache(generator, slots, index_dtype) -> None:
    k, v = torch.randn(4, 2, 16, generator=generator), torch.randn(4, 2, 16, generator=generator)
    caches = [torch.randn(4, 16, 2, 16, generator=generator) for _ in range(2)]
    ref = [c.clone() for c in caches]
    cpu.write_kv(*caches, k, v, torch.tensor(slots, dtype=index_dtype))
    reference.write_kv(*ref, k, v, torch.tensor(slots, dtype=index_dtype))
    assert all(torch.equal(a, b) for a, b in zip(caches, ref))
