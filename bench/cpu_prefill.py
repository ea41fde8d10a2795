"""Prefill of a ~2K-token prompt on the CPU, as the language server's warm-ups run it.

    python bench/cpu_prefill.py [--model NAME] [--tokens 2000] [--repeat 3] [--chunks 64,128,256,512]

Loads the model and drives the serving core (paged KV, chunked prefill) directly with one
prefill-only request per run (`SamplingParams(max_tokens=0)`: what a warm-up is), prompts cut
from loopls' own `context/*.py`. Rows: the step's chunk size (`prefill_only_chunk`), fp32 (the
server's CPU dtype) against bf16 weights where the CPU has bf16 instructions, one torch
thread against two (the server runs one: spinning OpenMP threads slow decode on shared
cores). Columns: wall and CPU time per 1K tokens (medians; the CPU time moves much less than
the wall time on a shared machine), the longest step (what a generation arriving mid-warm-up
may wait for), and whether 16 greedy tokens after each prompt equal fp32's at the default
chunk (the numerics changed or not).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.models import resolve_model_name
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.serving.core import EngineCore
from loopls.engine.serving.scheduler import SchedulerConfig

ROOT = Path(__file__).resolve().parents[1]


def prompts(tokenizer, tokens: int, count: int) -> list[list[int]]:
    ids = tokenizer.encode("".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "context").glob("*.py"))))
    return [ids[i * tokens:(i + 1) * tokens] for i in range(count)]


def run(model, prompt: list[int], chunk: int) -> tuple[float, float, float, list[int]]:
    """Prefill `prompt` (wall s, CPU s, longest step s), then 16 greedy tokens after its first
    three quarters (the next request, from the prefix cache)."""
    core = EngineCore(model, SchedulerConfig(num_blocks=1024, block_size=16, prefill_only_chunk=chunk), eos_ids=())
    core.add("warm", prompt, SamplingParams(max_tokens=0))
    wall, cpu, longest = time.perf_counter(), time.process_time(), 0.0
    while core.has_work:
        began = time.perf_counter()
        core.step()
        longest = max(longest, time.perf_counter() - began)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    core.add("next", prompt[: len(prompt) * 3 // 4], SamplingParams(max_tokens=16, min_tokens=16))
    tokens: list[int] = []
    while core.has_work:
        for event in core.step():
            tokens += event.new_tokens
    return wall, cpu, longest, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="default: the shipped default model")
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3, help="prompts per row")
    ap.add_argument("--chunks", default="64,128,256,512")
    args = ap.parse_args()
    chunks = [int(c) for c in args.chunks.split(",")]
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, bf16 instructions: {bf16}; {time.strftime('%Y-%m-%d %H:%M')}; load "
          f"{os.getloadavg()[0]:.1f}")
    rows = [("float32", 1, c) for c in chunks]
    if bf16:
        rows += [("bfloat16", 1, 256), ("bfloat16", 1, 128)]
    rows += [("float32", 2, 256)]
    models = {dtype: load_checkpoint(resolve_model_name(args.model), dtype=dtype) for dtype in {r[0] for r in rows}}
    texts = prompts(models["float32"].tokenizer, args.tokens, args.repeat)
    reference: list[list[int]] | None = None
    print("| dtype | threads | chunk | wall ms / 1K tokens | CPU ms / 1K tokens | longest step ms | greedy = fp32 |")
    print("|---|---|---|---|---|---|---|")
    for dtype, threads, chunk in rows:
        torch.set_num_threads(threads)
        results = [run(models[dtype].model, p, chunk) for p in texts]
        outputs = [r[3] for r in results]
        if reference is None and dtype == "float32" and chunk == 256:
            reference = outputs
        same = "-" if reference is None else f"{sum(a == b for a, b in zip(outputs, reference))}/{len(outputs)}"
        per_k = 1000 / args.tokens
        print(f"| {dtype} | {threads} | {chunk} | {1000 * per_k * statistics.median(r[0] for r in results):.0f} | "
              f"{1000 * per_k * statistics.median(r[1] for r in results):.0f} | "
              f"{1000 * statistics.median(r[2] for r in results):.0f} | {same} |", flush=True)
    print(f"# load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
