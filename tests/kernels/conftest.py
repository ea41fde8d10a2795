"""Kernel test set-up: where the Triton kernels run, and a random stream per test case.

With CUDA the kernels run compiled. Without it they run in Triton's interpreter
(TRITON_INTERPRET=1, numpy on the CPU) when triton is installed: the interpreter is chosen
when a kernel is *decorated*, so the kernel modules are (re)imported here with the variable
set (before triton itself is first imported: its own jit helpers are decorated then too), and
every kernel test runs with it set (triton reads it again at launch); other tests never see it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import SimpleNamespace

import pytest
import torch
from kernel_cases import ON_GPU

KERNEL_MODULES = ("attention_tiles", "launch", "kv_write", "paged_attention", "loop_attention", "norms", "rope")


def _import_kernels() -> SimpleNamespace:
    names = [f"loopls.kernels.{m}" for m in KERNEL_MODULES]
    if ON_GPU:
        return SimpleNamespace(**{m: importlib.import_module(n) for m, n in zip(KERNEL_MODULES, names)})
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        mods = {}
        for m, n in zip(KERNEL_MODULES, names):
            # a module compiled earlier in this process (without the variable) is re-decorated
            mods[m] = importlib.reload(sys.modules[n]) if n in sys.modules else importlib.import_module(n)
        return SimpleNamespace(**mods)
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old


@pytest.fixture(scope="session")
def kernels() -> SimpleNamespace:
    """The Triton kernel modules, compiled (CUDA) or interpreted (CPU)."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed: the Triton kernels cannot run here")
    if not ON_GPU and "triton" in sys.modules and "TRITON_INTERPRET" not in os.environ:
        # triton.language's own jit helpers were decorated for the GPU: the interpreter
        # cannot run them. Nothing in the test suite should import triton on a CPU machine.
        pytest.fail("triton was imported before the kernel tests could select its interpreter")
    return _import_kernels()


@pytest.fixture(autouse=True)
def _interpreter_during_the_test(monkeypatch) -> None:
    if not ON_GPU:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if ON_GPU else "cpu")


@pytest.fixture
def generator(request) -> torch.Generator:
    # A fresh, reproducible stream per test case (its node id names the parameters).
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % (2**31)
    return torch.Generator().manual_seed(seed)


