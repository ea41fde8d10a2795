"""bench/kernels_bench.py runs end to end (--smoke: tiny shapes, Triton's interpreter without a
GPU), so the GPU run that measures the kernels cannot die on an error in the script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "bench" / "kernels_bench.py"


def test_kernels_bench_smoke_prints_every_row(kernels) -> None:
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--smoke"], capture_output=True, text=True, env=env, timeout=600
    )
    # Exit status 0 also says every prefill correctness row was within its bound.
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    rows = [line.strip().split("  ")[0] for line in run.stdout.splitlines()]
    for name in (
        "fused loop decode (splits 1)", "paged decode (splits 1)", "variant tile 64 warps 4 st 3", "write_kv",
        "paged causal", "paged window W=24", "paged 3 chunks of 5 after 65", "loop W=16",
        "causal T=70", "window T=70 W=24", "B=3 T=4 +30 cached", "loop T=70",
        "paged 128x64 w8 s5", "loop 128x64 w8 s5",
    ):
        assert name in rows, f"{name!r} missing from:\n{run.stdout}"
    assert "FAIL" not in run.stdout


def test_gpu_bench_modules_import_and_share_one_graph_timer(monkeypatch) -> None:
    """decode_gemm_bench.py and tp_drivers.py run only on GPUs; importing them here catches a
    broken import before a device run does, and both time CUDA-graph bursts with kernel_env's
    one helper."""
    import importlib

    monkeypatch.syspath_prepend(str(BENCH.parent))
    kernel_env = importlib.import_module("kernel_env")
    for name in ("decode_gemm_bench", "tp_drivers"):
        module = importlib.import_module(name)
        assert module.graph_us is kernel_env.graph_us, name
