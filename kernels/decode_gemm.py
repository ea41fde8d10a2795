"""The decode GEMMs of a GPU executor: cuBLAS or the Triton skinny GEMM, whichever is faster
for each shape, decided by timing both the first time the shape runs outside a graph capture
(the executor's warm-up step before capturing each decode graph).

Only decode-sized products take part: 1 to 32 rows of bf16/fp16 without bias. Anything else,
an untimed shape, and every shape met first during a capture, runs on cuBLAS. The choice is
per (rows rounded up to a power of two, N, K) and per kind (a plain product, or an MLP's
gate and up with the activation fused in); each is logged once. Under tensor parallelism
every rank times its own shapes: the choice changes no collective, only which kernel
computes the rank's own product.

Imports only torch: the Triton modules load when an instance is created, on a GPU process.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass

import torch
import torch.nn.functional as F

log = logging.getLogger("loopls.kernels")

# Bytes written between timed runs so that the weights come from memory, as in a decode step
# (which streams every layer's weights once), not from the L2 cache (50 MB on an H200).
_FLUSH_BYTES = 256 << 20
_WARMUP, _ITERS = 3, 15


@dataclass(frozen=True)
class Choice:
    kind: str  # "linear" or "gated"
    rows: int  # rounded up to a power of two
    n: int
    k: int
    config: object | None  # skinny_gemm.GemmConfig; None: cuBLAS
    cublas_us: float
    triton_us: float  # the best config's time

    def row(self) -> dict:
        return {
            "kind": self.kind, "rows": self.rows, "n": self.n, "k": self.k,
            "choice": "cublas" if self.config is None else f"triton {self.config}",
            "cublas_us": round(self.cublas_us, 2), "triton_us": round(self.triton_us, 2),
        }


class DecodeGemm:
    def __init__(self, device: torch.device, max_cols: int) -> None:
        from . import skinny_gemm  # Triton: only where a GPU executor is built

        self._sk = skinny_gemm
        self.device = device
        self.workspace = skinny_gemm.Workspace.create(
            device, skinny_gemm.MAX_ROWS, max_cols, max(c.split_k for c in skinny_gemm.CONFIGS)
        )
        self.choices: dict[tuple, Choice] = {}

    def applies(self, x: torch.Tensor, *weights: torch.Tensor) -> bool:
        return (
            x.is_cuda and x.dim() == 2 and 1 <= x.shape[0] <= self._sk.MAX_ROWS
            and x.dtype in (torch.bfloat16, torch.float16) and x.stride(1) == 1
            and all(w.dtype == x.dtype and w.dim() == 2 and w.stride(1) == 1 for w in weights)
            # Inference only: autograd (training runs the same modules) keeps torch's GEMMs.
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in (x, *weights)))
        )

    def linear(self, x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """x [M, K] @ weight [N, K].T -> [M, N] (into `out` if given)."""
        config = self._config("linear", x, weight) if self.applies(x, weight) else None
        if config is None:
            return F.linear(x, weight) if out is None else torch.mm(x, weight.t(), out=out)
        return self._sk.skinny_gemm(x, weight, config, out=out, workspace=self.workspace)

    def gated(self, x: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """silu(x @ gate.T) * (x @ up.T): an MLP's input to down_proj."""
        config = self._config("gated", x, gate, up) if self.applies(x, gate, up) else None
        if config is None:
            return F.silu(F.linear(x, gate)) * F.linear(x, up)
        return self._sk.skinny_gemm(x, gate, config, up=up)

    def table(self) -> list[dict]:
        """Every timed shape and what runs it (for logs and benchmarks)."""
        return [c.row() for c in self.choices.values()]

    def _config(self, kind: str, x: torch.Tensor, *weights: torch.Tensor):
        rows = 1 << (x.shape[0] - 1).bit_length()
        key = (kind, rows, weights[0].shape[0], x.shape[1], x.dtype)
        choice = self.choices.get(key)
        if choice is None:
            if torch.cuda.is_current_stream_capturing():
                return None  # no timing inside a capture: cuBLAS
            choice = self._decide(kind, rows, x, weights)
            self.choices[key] = choice
            log.info("decode GEMM %s %dx%dx%d: %s (cuBLAS %.1f us, best Triton %.1f us)",
                     kind, rows, choice.n, choice.k, choice.row()["choice"], choice.cublas_us, choice.triton_us)
        return choice.config

    def _decide(self, kind: str, rows: int, x: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> Choice:
        n, k = weights[0].shape[0], x.shape[1]
        xs = torch.randn(rows, k, dtype=x.dtype, device=x.device)  # scratch: the caller's `out` is untouched
        if kind == "gated":
            gate, up = weights

            def cublas():
                F.silu(F.linear(xs, gate)) * F.linear(xs, up)

            candidates = [c for c in self._sk.CONFIGS if c.split_k == 1]
        else:
            (w,) = weights
            out = torch.empty(rows, n, dtype=x.dtype, device=x.device)

            def cublas():
                torch.mm(xs, w.t(), out=out)

            candidates = [c for c in self._sk.CONFIGS if self._sk.fits(c, rows, n, self.workspace)]
        # Freed after the shape is timed: the caching allocator keeps it for the next shape
        # and the memory planner's margin (not the K/V pool) covers it.
        flush = torch.empty(_FLUSH_BYTES, dtype=torch.uint8, device=x.device)
        base = self._time(cublas, flush)
        best, best_us = None, float("inf")
        for config in candidates:
            if kind == "gated":
                def run(config=config):
                    self._sk.skinny_gemm(xs, gate, config, up=up)
            else:
                def run(config=config):
                    self._sk.skinny_gemm(xs, w, config, out=out, workspace=self.workspace)
            try:
                us = self._time(run, flush)
            except Exception as exc:  # noqa: BLE001 - Triton's compile errors share no base class
                # A config this GPU or Triton version cannot build is skipped, not fatal:
                # cuBLAS always remains.
                log.warning("decode GEMM %s %dx%dx%d: config %s failed: %s", kind, rows, n, k, config, exc)
                continue
            if us < best_us:
                best, best_us = config, us
        return Choice(kind, rows, n, k, best if best_us < base else None, base, best_us)

    def _time(self, fn, flush: torch.Tensor) -> float:
        """Median microseconds of `fn` with a cold L2 cache (`flush` written before each run)."""
        stream = torch.cuda.current_stream(self.device)
        pairs = []
        for i in range(_WARMUP + _ITERS):
            flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            fn()
            end.record(stream)
            if i >= _WARMUP:
                pairs.append((start, end))
        stream.synchronize()
        return 1000 * statistics.median(s.elapsed_time(e) for s, e in pairs)
