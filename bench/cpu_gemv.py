"""The matrix products of one CPU decode step, alone, in each way the weights can be held.

    python bench/cpu_gemv.py [--model NAME] [--rounds 3] [--repeats 25]

A decode step of the default model multiplies 1 row (one sequence) or 3 rows (best-of-3) by
every weight matrix: each decoder layer's q, k, v, o, gate, up and down once per Loop pass,
then the LM head (57 products for the shipped model). This times those products alone,
outside the engine, over the model's own weights, on one torch thread (as the engine runs),
for each way of holding them:

- fp32 `F.linear` (the engine today: the bf16 checkpoint widened);
- fp32 `x @ W.T` over contiguous transposed copies (another BLAS path);
- bf16 weights with bf16 activations (`F.linear` in bf16: oneDNN's path, which uses
  AVX512_BF16/AMX where the CPU has them), the activations cast in and the result cast out;
- bf16 weights widened to fp32 in every product (keeping only the bf16 copy);
- int8 weight-only, per output channel (`torch.ops.aten._weight_int8pack_mm`, what
  `model.cpuWeights: int8` runs: engine/model/int8.py), activations cast to bf16 and back,
  the 57 products as they are and as the engine's int8 path calls them (q/k/v and gate/up
  each as one product: 33 calls);
- int8 dynamic quantization (`torch.ao` fbgemm: int8 weights per tensor, activations
  quantized per call).

Rows: CPU ms per step (the thread's time; median of `--repeats` after 5 warm-up runs, the
median over `--rounds` rounds taken in turn), and the bytes of weights read per step over
that time (GB/s). The load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

from loopls.engine.model.int8 import quantize_rows
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.models import resolve_model_name

_LAYER = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def step_weights(model) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(the step's matrices in the order it reads them, the same with q/k/v and gate/up
    concatenated as the int8 path calls them)."""
    loops = max(model.config.loop_num, 1)
    plain, fused = [], []
    for layer in model.model.layers:
        w = [layer.get_submodule(name).weight.detach() for name in _LAYER]
        plain.append(w)
        fused.append([torch.cat(w[0:3]), w[3], torch.cat(w[4:6]), w[6]])
    head = model.output_weight().detach()
    return ([m for _ in range(loops) for ws in plain for m in ws] + [head],
            [m for _ in range(loops) for ws in fused for m in ws] + [head])


def candidates(weights: list[torch.Tensor], fused: list[torch.Tensor]) -> dict[str, tuple[int, callable]]:
    """name -> (weight bytes read per step, run(xs) doing the step's products)."""
    bf16 = [w.bfloat16() for w in weights]
    transposed = [w.t().contiguous() for w in weights]
    int8 = [quantize_rows(w) for w in weights]
    int8_fused = [quantize_rows(w) for w in fused]
    mm = torch.ops.aten._weight_int8pack_mm
    fp32_bytes = sum(w.numel() * 4 for w in weights)
    int8_bytes = sum(q.numel() + s.numel() * 2 for q, s in int8)
    out = {
        "fp32 F.linear (the engine's fp32)": (fp32_bytes, lambda xs: [F.linear(xs[w.shape[1]], w) for w in weights]),
        "fp32 x @ W.T (transposed copies)": (fp32_bytes, lambda xs: [xs[t.shape[0]] @ t for t in transposed]),
        "bf16 F.linear, bf16 activations (cast in and out)": (
            fp32_bytes // 2, lambda xs: [F.linear(xs[w.shape[1]].bfloat16(), w).float() for w in bf16]),
        "bf16 widened to fp32 per product": (
            fp32_bytes // 2, lambda xs: [F.linear(xs[w.shape[1]], w.float()) for w in bf16]),
        "int8 per channel, 57 calls (bf16 activations, cast in and out)": (
            int8_bytes, lambda xs: [mm(xs[q.shape[1]].bfloat16(), q, s).float() for q, s in int8]),
        "int8 per channel, 33 calls (the engine's int8: q/k/v and gate/up fused)": (
            int8_bytes, lambda xs: [mm(xs[q.shape[1]].bfloat16(), q, s).float() for q, s in int8_fused]),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        dynamic = []
        for w in weights:
            layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            layer.weight = torch.nn.Parameter(w.clone(), requires_grad=False)
            layer.qconfig = torch.ao.quantization.default_dynamic_qconfig
            dynamic.append(DynamicLinear.from_float(layer))
    out["int8 dynamic (torch.ao fbgemm, per-tensor activations)"] = (
        int8_bytes, lambda xs: [m(xs[m.in_features]) for m in dynamic])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="default: the shipped default model")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=25)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lm = load_checkpoint(resolve_model_name(args.model), device="cpu", dtype="float32")
    weights, fused = step_weights(lm.model)
    runs = candidates(weights, fused)
    widths = sorted({w.shape[1] for w in weights})
    times: dict[tuple[str, int], list[float]] = {}
    loads = [os.getloadavg()[0]]
    with torch.inference_mode():
        for _ in range(args.rounds):
            for rows in (1, 3):
                xs = {k: torch.randn(rows, k) for k in widths}
                for name, (_, run) in runs.items():
                    samples = []
                    for _ in range(args.repeats + 5):
                        began = time.thread_time()
                        run(xs)
                        samples.append(time.thread_time() - began)
                    times.setdefault((name, rows), []).append(1000 * statistics.median(samples[5:]))
            loads.append(os.getloadavg()[0])
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; torch "
          f"{torch.__version__}; {time.strftime('%Y-%m-%d %H:%M %Z')}; model {lm.path.name}; {len(weights)} products "
          f"per step; one torch thread; load {min(loads):.2f}-{max(loads):.2f}")
    print("| weights | rows | CPU ms / step | MB of weights / step | GB/s |")
    print("|---|---|---|---|---|")
    for rows in (1, 3):
        for name, (nbytes, _) in runs.items():
            ms = statistics.median(times[(name, rows)])
            print(f"| {name} | {rows} | {ms:.2f} | {nbytes / 1e6:.0f} | {nbytes / ms / 1e6:.1f} |")


if __name__ == "__main__":
    main()
