"""The fused reduce + residual add + RMSNorm over symmetric memory (kernels/symm_norm.py) on one
rank: the peers' buffers are then the rank's own, the barrier has no peer to wait for, and the
result must be the add+norm of norms.py's reference with the signal pad untouched. The two-rank
sum runs in the GPU tests of tensor parallelism (symm-fused all-reduce)."""

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


@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")
def test_two_ranks_on_two_streams_meet_at_the_barrier(kernels, generator) -> None:  # noqa: ARG001
    """Two "ranks" on one GPU, each launching on its own stream with the other's buffer and
    signal pad as its peer's: each must wait for the other's partials, sum them in rank
    order (the same bits on both), and leave the pads at zero; the two regions alternate as
    o_proj and down_proj use them."""
    symm_norm = importlib.import_module("loopls.kernels.symm_norm")
    device, dtype, rows, cols, region = torch.device("cuda"), torch.bfloat16, 4, 5120, 4 * 5120
    bufs = [torch.zeros(3 * region, dtype=dtype, device=device) for _ in range(2)]
    pads = [torch.zeros(256, dtype=torch.int32, device=device) for _ in range(2)]
    ptrs = torch.tensor([b.data_ptr() for b in bufs], dtype=torch.int64, device=device)
    pad_ptrs = torch.tensor([p.data_ptr() for p in pads], dtype=torch.int64, device=device)
    weight = torch.randn(cols, generator=generator).to(dtype).to(device)
    streams = [torch.cuda.Stream(device) for _ in range(2)]
    for step in range(6):
        offset = (1 + step % 2) * region
        parts = [torch.randn(rows, cols, generator=generator).to(dtype).to(device) for _ in range(2)]
        residual = torch.randn(rows, cols, generator=generator).to(dtype).to(device)
        for r in range(2):
            bufs[r][offset : offset + rows * cols].copy_(parts[r].flatten())
        torch.cuda.synchronize(device)
        outs = []
        for r in range(2):
            with torch.cuda.stream(streams[r]):
                outs.append(symm_norm.reduce_add_rms_norm(ptrs, pad_ptrs, r, 2, offset, rows, residual, weight, 1e-5))
        torch.cuda.synchronize(device)
        total = (parts[0].float() + parts[1].float()).to(dtype)
        ref_out, ref_h = reference.add_rms_norm(total, residual, weight, 1e-5)
        for out, h in outs:
            assert torch.equal(h, outs[0][1]) and torch.equal(out, outs[0][0])  # every rank: the same bits
            assert rel_err(h, ref_h) < BOUNDS[dtype] and rel_err(out, ref_out) < BOUNDS[dtype]
        assert all(int(p.abs().sum()) == 0 for p in pads)
