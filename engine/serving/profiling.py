"""Where one rank's step time goes: GEMMs, attention, all-reduce, other kernels, and the GPU
waiting on the host.

`StepProfiler` records the device's kernels with `torch.profiler` (CUPTI sees the kernels
inside CUDA-graph replays too) over a run of steps and sorts them by name into categories.
The idle share is the wall time of the steps not covered by any kernel: scheduling and step
building on rank 0, the step message to the other ranks, input copies, launches and the
token read-back. An all-reduce kernel's time includes waiting for the slowest rank to reach
it, so a rank that is ahead shows more all-reduce time. On a CPU the operators' own times
are sorted the same way (for smoke runs; they do not add up to the wall time).
"""

from __future__ import annotations

import re
import time

import torch
from torch.profiler import ProfilerActivity, profile

CATEGORIES = (
    ("all_reduce", re.compile(r"nccl|all_?reduce|all_?gather|one_shot|two_shot|gloo", re.I)),
    ("attention", re.compile(r"attention|attn|paged|loop_|merge|flash|sdpa|scaled_dot", re.I)),
    ("gemm", re.compile(r"gemm|gemv|nvjet|xmma|cutlass|cublas|splitk|\bmm\b|addmm|matmul|linear", re.I)),
)


def category(name: str) -> str:
    """The category of a kernel (or CPU operator) name: the first pattern that matches."""
    return next((cat for cat, pattern in CATEGORIES if pattern.search(name)), "other")


class StepProfiler:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self._prof: profile | None = None
        self._t0 = 0.0

    def start(self) -> None:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        self._prof = profile(activities=activities)
        self._prof.__enter__()
        self._sync()
        self._t0 = time.perf_counter()

    def stop(self, steps: int, top: int = 25) -> dict:
        """Milliseconds per step of each category, `wall` and `idle`, `kernels` seen, and the
        `top` kernels by time: [name, category, calls per step, ms per step]."""
        self._sync()
        wall = time.perf_counter() - self._t0
        self._prof.__exit__(None, None, None)
        totals = {cat: 0.0 for cat, _ in CATEGORIES} | {"other": 0.0}
        kernels = 0
        steps = max(steps, 1)
        seen = []
        for evt in self._prof.key_averages():
            if self.cuda and _device_type(evt) != "cuda":
                continue
            micros = _self_time(evt, self.cuda)
            totals[category(evt.key)] += micros
            kernels += evt.count
            seen.append([evt.key[:120], category(evt.key), evt.count / steps, micros / 1e3 / steps])
        out: dict = {name: total / 1e3 / steps for name, total in totals.items()}
        busy = sum(out.values())
        out["wall"] = wall * 1e3 / steps
        out["idle"] = max(out["wall"] - busy, 0.0) if self.cuda else float("nan")
        out["kernels"] = kernels / steps
        out["top"] = sorted(seen, key=lambda row: -row[3])[:top]
        return out

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


def _device_type(evt) -> str:
    kind = getattr(evt, "device_type", None)
    return str(kind).rsplit(".", 1)[-1].lower() if kind is not None else ""


def _self_time(evt, cuda: bool) -> float:
    """Microseconds the event itself took (device time for kernels)."""
    if not cuda:
        return float(getattr(evt, "self_cpu_time_total", 0.0))
    for attr in ("self_device_time_total", "self_cuda_time_total", "device_time_total", "cuda_time_total"):
        value = getattr(evt, attr, None)
        if value:
            return float(value)
    return 0.0
