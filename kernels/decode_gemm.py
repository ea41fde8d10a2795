"""The decode GEMMs of a GPU executor: cuBLAS or the Triton skinny GEMM, whichever is faster
for each shape, decided by timing both the first time the shape runs outside a graph capture
(the executor's warm-up step before capturing each decode graph).

Only decode-sized products take part: 1 to 32 rows of bf16/fp16 without bias. Anything else,
an untimed shape, and every shape met first during a capture, runs on cuBLAS. The choice is
per (rows rounded up to a power of two, N, K) and per kind (a plain product, or an MLP's
gate and up with the activation fused in); each is logged once. Under tensor parallelism
every rank times its own shapes: the choice changes no collective, only which kernel
computes the rank's own product.

cuBLAS runs a plain product either through torch.mm or through torch.addmm with a zero bias,
which PyTorch sends to cuBLASLt (its bias epilogue); on the 14B shape's down_proj at 32 rows
cuBLASLt picked the faster kernel (docs/benchmarks.md), so both are timed too. An MLP whose
gate and up weights lie side by side in memory (`layers.MLP`: placed so at loading) runs them
on cuBLAS as ONE product over the pair, then one fused SiLU x up kernel: one weight stream
instead of two GEMMs, a SiLU and a multiply.

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
CUBLASLT = "cublaslt"  # Choice.config of a product run by torch.addmm (cuBLASLt)


def gate_up_pair(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor | None:
    """[2N, K]: gate's rows then up's, as one view, where `up` follows `gate` in memory."""
    if gate.shape != up.shape or gate.dim() != 2 or not (gate.is_contiguous() and up.is_contiguous()):
        return None
    if gate.untyped_storage().data_ptr() != up.untyped_storage().data_ptr():
        return None
    if up.storage_offset() != gate.storage_offset() + gate.numel():
        return None
    return gate.as_strided((2 * gate.shape[0], gate.shape[1]), gate.stride(), gate.storage_offset())


@dataclass(frozen=True)
class Choice:
    kind: str  # "linear" or "gated"
    rows: int  # rounded up to a power of two
    n: int
    k: int
    config: object | None  # skinny_gemm.GemmConfig; CUBLASLT; None: cuBLAS
    cublas_us: float
    triton_us: float  # the best config's time
    cublaslt_us: float | None = None  # plain products only

    def row(self) -> dict:
        choice = "cublas" if self.config is None else self.config if self.config == CUBLASLT else f"triton {self.config}"
        row = {
            "kind": self.kind, "rows": self.rows, "n": self.n, "k": self.k, "choice": choice,
            "cublas_us": round(self.cublas_us, 2), "triton_us": round(self.triton_us, 2),
        }
        if self.cublaslt_us is not None:
            row["cublaslt_us"] = round(self.cublaslt_us, 2)
        return row


class DecodeGemm:
    def __init__(self, device: torch.device, max_cols: int) -> None:
        from . import skinny_gemm  # Triton: only where a GPU executor is built

        self._sk = skinny_gemm
        self.device = device
        self.workspace = skinny_gemm.Workspace.create(
            device, skinny_gemm.MAX_ROWS, max_cols, max(c.split_k for c in skinny_gemm.CONFIGS)
        )
        self.choices: dict[tuple, Choice] = {}
        self._zero_bias: dict[tuple, torch.Tensor] = {}  # (N, dtype): cuBLASLt's bias

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
        if config == CUBLASLT:
            bias = self._zero_bias[(weight.shape[0], x.dtype)]
            return torch.addmm(bias, x, weight.t()) if out is None else torch.addmm(bias, x, weight.t(), out=out)
        return self._sk.skinny_gemm(x, weight, config, out=out, workspace=self.workspace)

    def gated(self, x: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """silu(x @ gate.T) * (x @ up.T): an MLP's input to down_proj."""
        config = self._config("gated", x, gate, up) if self.applies(x, gate, up) else None
        if config is None:
            return self._cublas_gated(x, gate, up)
        return self._sk.skinny_gemm(x, gate, config, up=up)

    def _cublas_gated(self, x: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        # The fused activation has no backward: under autograd, torch's ops.
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, gate, up))
        pair = gate_up_pair(gate, up) if x.is_cuda and not grad else None
        if pair is None:
            return F.silu(F.linear(x, gate)) * F.linear(x, up)
        return self._sk.silu_mul(F.linear(x, pair))

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
            log.info("decode GEMM %s %dx%dx%d: %s (cuBLAS %.1f us, cuBLASLt %s us, best Triton %.1f us)",
                     kind, rows, choice.n, choice.k, choice.row()["choice"], choice.cublas_us,
                     "-" if choice.cublaslt_us is None else f"{choice.cublaslt_us:.1f}", choice.triton_us)
        return choice.config

    def _decide(self, kind: str, rows: int, x: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> Choice:
        n, k = weights[0].shape[0], x.shape[1]
        xs = torch.randn(rows, k, dtype=x.dtype, device=x.device)  # scratch: the caller's `out` is untouched
        if kind == "gated":
            gate, up = weights

            def cublas():
                self._cublas_gated(xs, gate, up)

            candidates = [c for c in self._sk.CONFIGS if c.split_k == 1]
        else:
            (w,) = weights
            out = torch.empty(rows, n, dtype=x.dtype, device=x.device)
            bias = self._zero_bias.setdefault((n, x.dtype), torch.zeros(n, dtype=x.dtype, device=x.device))

            def cublas():
                torch.mm(xs, w.t(), out=out)

            def cublaslt():
                torch.addmm(bias, xs, w.t(), out=out)

            candidates = [c for c in self._sk.CONFIGS if self._sk.fits(c, rows, n, self.workspace)]
        # Freed after the shape is timed: the caching allocator keeps it for the next shape
        # and the memory planner's margin (not the K/V pool) covers it.
        flush = torch.empty(_FLUSH_BYTES, dtype=torch.uint8, device=x.device)
        base = self._time(cublas, flush)
        lt_us = None
        if kind == "linear":
            try:
                lt_us = self._time(cublaslt, flush)
            except RuntimeError as exc:  # a shape cuBLASLt refuses: cuBLAS and Triton remain
                log.warning("decode GEMM %s %dx%dx%d: cuBLASLt failed: %s", kind, rows, n, k, exc)
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
        cublas_best = base if lt_us is None else min(base, lt_us)
        if best_us < cublas_best:
            chosen = best
        else:
            chosen = CUBLASLT if lt_us is not None and lt_us < base else None
        return Choice(kind, rows, n, k, chosen, base, best_us, lt_us)

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
