"""Kernel test set-up: where the Triton kernels run, and a random stream per test case.

With CUDA the kernels run compiled. Without it they run in Triton's interpreter
(TRITON_INTERPRET=1, numpy on the CPU) when triton is installed; tests/conftest.py selects
the interpreter for the whole session, before anything imports triton.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import SimpleNamespace

import pytest
import torch
from kernel_cases import ON_GPU

KERNEL_MODULES = (
    "attention_tiles", "prefill_tiles", "launch", "kv_write", "paged_attention", "loop_attention", "prefill",
    "norms", "rope",
)


@pytest.fixture(scope="session")
def kernels() -> SimpleNamespace:
    """The Triton kernel modules, compiled (CUDA) or interpreted (CPU)."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed: the Triton kernels cannot run here")
    if not ON_GPU and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.fail("no CUDA device and TRITON_INTERPRET is not 1: set it before triton is imported")
    return SimpleNamespace(**{m: importlib.import_module(f"loopls.kernels.{m}") for m in KERNEL_MODULES})


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if ON_GPU else "cpu")


@pytest.fixture
def generator(request) -> torch.Generator:
    # A fresh, reproducible stream per test case (its node id names the parameters).
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % (2**31)
    return torch.Generator().manual_seed(seed)


