"""The fused reduce + residual add + RMSNorm over symmetric memory (kernels/symm_norm.py) on one
rank: the peers' buffers are then the rank's own, the barrier has no peer to wait for, and the
result must be the add+norm of norms.py's reference with the signal pad untouched. Two ranks run
here one after the other (the second's arrival signalled in advance), and on two GPUs in the
tests of tensor parallelism (the symm-fused all-reduce)."""

from __future__ import annotations

import importlib

import pytest
import torch
from kernel_cases import BOUNDS, ON_GPU, rel_err

from loopls.kernels import reference

DTYPES = (torch.bfloat16, torch.float32) if ON_GPU else (torch.float16, torch.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("rows", "cols"), [(1, 64), (3, 200), (8, 512)])
def test_one_rank_is_the_add_norm(kernels, device, generator, dtype, rows, cols) -> None:  # noqa: ARG001
    symm_norm = importlib.import_module("loopls.kernels.symm_norm")
    offset = 24  # the partials start this many elements into the buffer
    buf = torch.randn(offset + rows * cols + 40, generator=generator).to(dtype).to(device)
    residual = torch.randn(rows, cols, generator=generator).to(dtype).to(device)
    weight = torch.randn(cols, generator=generator).to(dtype).to(device)
    pads = torch.zeros(256, dtype=torch.int32, device=device)
    ptrs = torch.tensor([buf.data_ptr()], dtype=torch.int64, device=device)
    pad_ptrs = torch.tensor([pads.data_ptr()], dtype=torch.int64, device=device)
    out, h = symm_norm.reduce_add_rms_norm(ptrs, pad_ptrs, 0, 1, offset, rows, residual, weight, 1e-5)
    ref_out, ref_h = reference.add_rms_norm(buf[offset : offset + rows * cols].view(rows, cols), residual, weight, 1e-5)
    assert rel_err(h, ref_h) < BOUNDS[dtype]
    assert rel_err(out, ref_out) < BOUNDS[dtype]
    assert int(pads.abs().sum()) == 0  # every barrier finished: the slots are free again


@pytest.mark.timeout(120)
def test_two_ranks_meet_at_the_barrier(kernels, device, generator) -> None:  # noqa: ARG001
    """Two ranks' kernels over each other's buffers and signal pads, one after the other on one
    device: rank 0 runs first with rank 1's arrival already signalled, rank 1 then finds rank
    0's. Each sums both partials in rank order (the same bits on both), and every slot is back
    at zero; the two regions alternate as o_proj and down_proj use them. (Run concurrently, as
    on two GPUs, the order of arrival is all that differs: test_tp_serving_gpu.py.)"""
    symm_norm = importlib.import_module("loopls.kernels.symm_norm")
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    world, rows, cols, region = 2, 3, 320, 3 * 320
    bufs = [torch.zeros(3 * region, dtype=dtype, device=device) for _ in range(world)]
    pads = [torch.zeros(256, dtype=torch.int32, device=device) for _ in range(world)]
    ptrs = torch.tensor([b.data_ptr() for b in bufs], dtype=torch.int64, device=device)
    pad_ptrs = torch.tensor([p.data_ptr() for p in pads], dtype=torch.int64, device=device)
    weight = torch.randn(cols, generator=generator).to(dtype).to(device)
    for step in range(4):
        offset = (1 + step % 2) * region
        parts = [torch.randn(rows, cols, generator=generator).to(dtype).to(device) for _ in range(world)]
        residual = torch.randn(rows, cols, generator=generator).to(dtype).to(device)
        for r in range(world):
            bufs[r][offset : offset + rows * cols].copy_(parts[r].flatten())
        # Rank 1 has arrived (for every row): its signal sits in rank 0's pad.
        pads[0].view(-1, world)[:rows, 1] = 1
        outs = [symm_norm.reduce_add_rms_norm(ptrs, pad_ptrs, r, world, offset, rows, residual, weight, 1e-5)
                for r in range(world)]
        total = (parts[0].float() + parts[1].float()).to(dtype)
        ref_out, ref_h = reference.add_rms_norm(total, residual, weight, 1e-5)
        for out, h in outs:
            assert torch.equal(h, outs[0][1]) and torch.equal(out, outs[0][0])  # every rank: the same bits
            assert rel_err(h, ref_h) < BOUNDS[dtype] and rel_err(out, ref_out) < BOUNDS[dtype]
        # Rank 1's own signal to rank 0 is what the preset stood for: it is the one slot still
        # set (then cleared, as rank 0 would have consumed it); every other slot is free.
        late = pads[0].view(-1, world)[:rows, 1]
        assert bool((late == 1).all())
        late.zero_()
        assert all(int(p.abs().sum()) == 0 for p in pads)
