"""The fused reduce + residual add + RMSNorm over symmetric memory (kernels/symm_norm.py) on one
rank: the peers' buffers are then the rank's own, the barrier meets only itself, and the result
must be the add+norm of norms.py's reference with the signal pad left at zero. The two-rank
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
    buf = torch.randn(rows * cols + 40, generator=generator).to(dtype).to(device)
    residual = torch.randn(rows, cols, generator=generator).to(dtype).to(device)
    weight = torch.randn(cols, generator=generator).to(dtype).to(device)
    pads = torch.zeros(256, dtype=torch.int32, device=device)
    ptrs = torch.tensor([buf.data_ptr()], dtype=torch.int64, device=device)
    pad_ptrs = torch.tensor([pads.data_ptr()], dtype=torch.int64, device=device)
    out, h = symm_norm.reduce_add_rms_norm(ptrs, pad_ptrs, 0, 1, rows, residual, weight, 1e-5)
    ref_out, ref_h = reference.add_rms_norm(buf[: rows * cols].view(rows, cols), residual, weight, 1e-5)
    assert rel_err(h, ref_h) < BOUNDS[dtype]
    assert rel_err(out, ref_out) < BOUNDS[dtype]
    assert int(pads.abs().sum()) == 0  # every barrier finished: the slots are free again
