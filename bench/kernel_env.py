"""What the kernel benchmarks share: the device and dtype of a run, its timers (and one for a
burst of calls captured in a CUDA graph), attention shapes, random paged caches and the device's
reference rates (copy bandwidth, bf16 matmul)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch


@dataclasses.dataclass(frozen=True)
class Shape:
    """Attention shape: query heads, KV heads, head_dim, cache rows per block."""

    heads: int
    kv_heads: int
    head_dim: int
    block_size: int

    @property
    def group(self) -> int:
        return self.heads // self.kv_heads


# IQuest-Coder-V1 (7B to 40B): 40 query heads, 8 KV heads, head_dim 128; the engine's blocks of 16.
IQUEST = Shape(40, 8, 128, 16)


@dataclasses.dataclass(frozen=True)
class Env:
    device: str
    dtype: torch.dtype
    smoke: bool  # tiny shapes, one call per timing

    def timed(self, fn: Callable[[], object]) -> float:
        """Median milliseconds of fn. Smoke: one call on the host clock. Calls longer than 25 ms
        (long prefills): median of 3 after one warm-up, which bounds a 128K row to a few
        seconds; shorter ones: triton.testing.do_bench (L2 flushed between runs)."""
        if self.smoke:
            start = time.perf_counter()
            fn()
            if self.device == "cuda":
                torch.cuda.synchronize()
            return (time.perf_counter() - start) * 1e3
        fn()  # compiles and warms the allocator
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        if begin.elapsed_time(end) > 25:
            times = []
            for _ in range(3):
                begin.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(begin.elapsed_time(end))
            return sorted(times)[1]
        import triton.testing

        return triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median")

    def randn(self, *shape: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(*shape, device=self.device, dtype=self.dtype, generator=gen)


def graph_us(fn: Callable[[int], object], calls: int, repeats: int = 10, device: torch.device | None = None) -> float:
    """Microseconds per call of fn(i) for i in range(calls), the calls captured back to back in
    one CUDA graph (as a decode step runs them) and the graph replayed `repeats` times."""
    for i in range(calls):  # compile, pick kernels and warm the library handles outside the capture
        fn(i)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fn(i)
    graph.replay()
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        graph.replay()
    torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / (repeats * calls) * 1e6


def paged_cache(env: Env, shape: Shape, batch: int, ctx: int, gen: torch.Generator):
    """A paged cache holding `batch` sequences of `ctx` keys in shuffled blocks."""
    per_seq = -(-ctx // shape.block_size)
    nblocks = batch * per_seq
    k = env.randn(nblocks, shape.block_size, shape.kv_heads, shape.head_dim, gen=gen)
    v = env.randn(nblocks, shape.block_size, shape.kv_heads, shape.head_dim, gen=gen)
    tables = torch.randperm(nblocks, device=env.device, generator=gen).view(batch, per_seq).int()
    return k, v, tables


def copy_bandwidth(env: Env) -> float:
    """Device-to-device copy of 2 GiB, bytes read + written per second."""
    src = torch.empty(2**30 if not env.smoke else 2**16, dtype=torch.float16, device=env.device).normal_()
    dst = torch.empty_like(src)
    ms = env.timed(lambda: dst.copy_(src))
    return 2 * src.numel() * 2 / (ms * 1e-3)


def matmul_rate(env: Env, gen: torch.Generator) -> float:
    """bf16 (smoke: the run's dtype) matrix product on random data, FLOP per second: the
    ceiling a dense attention kernel's two products can approach."""
    n = 8192 if not env.smoke else 64
    a, b = env.randn(n, n, gen=gen), env.randn(n, n, gen=gen)
    return 2 * n**3 / (env.timed(lambda: a @ b) * 1e-3)
