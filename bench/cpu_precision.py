"""Reduced-precision linear layers for CPU decoding: faster, and do the greedy tokens change?

    python bench/cpu_precision.py [--model NAME] [--prompts 6] [--prompt 512] [--tokens 32]

Loads the model on the CPU with one torch thread (as the server's engine runs) and decodes
greedily after `--prompts` prompts cut from loopls' own `context/*.py` (each ending at a
line break), once per variant of every linear layer and the LM head:
- fp32: the model as the server runs it (the bf16 checkpoint widened to fp32);
- bf16: the weights kept in bf16 (the checkpoint's own values), activations rounded to bf16;
- int8: dynamically quantized linears (`torch.ao.quantization.quantize_dynamic`, fbgemm):
  int8 weights per tensor, activations quantized per call.
Prints one row per variant: decode time per token (median over the prompts; wall time on a
possibly shared machine, with the load average), the thread's CPU time per decoded token
(which moves much less with the load), how many prompts' greedy tokens equal fp32's, and
where the first difference is.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import statistics
import time
import types
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from loopls.engine.model.generate import generate
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.models import resolve_model_name
from loopls.engine.model.sampling_params import SamplingParams

ROOT = Path(__file__).resolve().parents[1]


class Bf16Linear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight.detach().to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.weight).float()


def _with_head(model: nn.Module, head: nn.Module) -> nn.Module:
    """The LM head is an F.linear over the (tied) output weight: route it through `head`."""
    def forward_packed(self, ids, positions, store, logit_rows=None):
        return head(self.hidden_packed(ids, positions, store, logit_rows)).float()
    model.forward_packed = types.MethodType(forward_packed, model)
    return model


def variants(model: nn.Module) -> dict[str, nn.Module]:
    bf16 = copy.deepcopy(model)
    for parent in list(bf16.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and child.bias is None:
                setattr(parent, name, Bf16Linear(child.weight))
    _with_head(bf16, Bf16Linear(bf16.output_weight()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
        head = nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=False)
        head.weight = nn.Parameter(model.output_weight().detach().clone(), requires_grad=False)
        head = torch.ao.quantization.quantize_dynamic(nn.Sequential(head), {nn.Linear}, dtype=torch.qint8)
    _with_head(int8, head)
    return {"fp32": model, "bf16": bf16, "int8": int8}


def prompts(tokenizer, count: int, length: int) -> list[list[int]]:
    text = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "context").glob("*.py")))
    out = []
    for i in range(count):
        end = text.index("\n", (i + 1) * len(text) // (count + 1)) + 1
        out.append(tokenizer.encode(text[:end])[-length:])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = load_checkpoint(resolve_model_name(args.model), device="cpu")
    cases = prompts(lm.tokenizer, args.prompts, args.prompt)
    params = SamplingParams(max_tokens=args.tokens, min_tokens=args.tokens, temperature=0.0)
    one = SamplingParams(max_tokens=1, temperature=0.0)  # the prefill alone, to subtract its CPU time
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
          f"torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M')}; model {lm.path}; one torch thread")
    print("| linear layers | decode per token (median) | CPU per token (median) | greedy tokens equal to fp32 "
          "| first difference at | load |")
    print("|---|---|---|---|---|---|")
    reference: list[list[int]] = []
    for name, model in variants(lm.model).items():
        run = dataclasses.replace(lm, model=model)
        per_token, cpu, equal, first = [], [], 0, []
        for i, ids in enumerate(cases):
            began = time.thread_time()
            generate(run, ids, one)
            prefill = time.thread_time() - began
            began = time.thread_time()
            gen = generate(run, ids, params)
            cpu.append((time.thread_time() - began - prefill) / (len(gen.token_ids) - 1))
            per_token.append((gen.timings["total_s"] - gen.timings["time_to_first_token_s"]) / (len(gen.token_ids) - 1))
            if name == "fp32":
                reference.append(gen.token_ids)
            same = next((j for j, (a, b) in enumerate(zip(gen.token_ids, reference[i])) if a != b), None)
            equal += same is None
            if same is not None:
                first.append(str(same))
        print(f"| {name} | {1000 * statistics.median(per_token):.1f} ms | {1000 * statistics.median(cpu):.1f} ms | "
              f"{equal}/{len(cases)} | "
              f"{', '.join(first) or '-'} | {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
