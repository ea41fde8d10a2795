"""What one completion costs the engine on this machine, in the server's path.

    python bench/completion_cost.py [--model NAME] [--prompt 1024] [--tokens 48] [--repeats 3]

Loads the model as the server does on a CPU (`load_native`: the serving engine on its own
worker thread, paged K/V, prefix cache) and submits, like the completion service, token-id
prompts cut from loopls' own `context/*.py`: a cold prompt (nothing cached: the whole
prefill), then the same prompt with its last line changed (the prefix cache holds the rest,
as after the warm-up) generating `--tokens` tokens greedily. Prints one row per repeat,
with the load average: the machine may be shared. Beside the wall times, the CPU time this
process spent (the engine's thread, nearly all of it) per decoded token: on a shared
machine it moves much less with the load than the wall time does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from pathlib import Path

from loopls.engine.backends.base import BackendConfig
from loopls.engine.backends.native import load_native
from loopls.engine.model.sampler import SamplingParams

ROOT = Path(__file__).resolve().parents[1]
TAIL = 16  # tokens of the "line being typed": what the warm request computes


async def measure(args: argparse.Namespace) -> None:
    backend = load_native(BackendConfig(kind="native", model=args.model, device="cpu", context_tokens=2048))
    text = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "context").glob("*.py")))
    ids = backend.tokenizer.encode(text)
    engines = {"server": backend.engine}
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}; model {backend.info.model} ({backend.info.path})")
    print("| engine | cold prefill of the prompt | warm: time to first token | decode per token | CPU per token "
          "| load |")
    print("|---|---|---|---|---|---|")
    decode: dict[str, list[float]] = {name: [] for name in engines}
    try:
        for rep in range(args.repeats):
            for name, engine in engines.items():
                prompt = ids[rep * 97 + len(name):][:args.prompt]  # a fresh prompt: nothing cached
                cold = await _run(engine, prompt, 1)
                cpu = time.process_time()
                warm = await _run(engine, prompt[:-TAIL] + prompt[-TAIL:][::-1], args.tokens)
                cpu = time.process_time() - cpu
                per_token = warm["decode_s"] / max(1, warm["tokens"] - 1)
                decode[name].append(per_token)
                print(f"| {name} | {1000 * cold['ttft_s']:.0f} ms ({len(prompt)} tokens) | "
                      f"{1000 * warm['ttft_s']:.0f} ms ({len(prompt) - warm['cached']} computed) | "
                      f"{1000 * per_token:.1f} ms ({warm['tokens']} tokens) | {1000 * cpu / warm['tokens']:.1f} ms | "
                      f"{os.getloadavg()[0]:.1f} |", flush=True)
    finally:
        backend.shutdown()
    for name, values in decode.items():
        print(f"# {name}: decode median {1000 * statistics.median(values):.1f} ms/token")


async def _run(engine, prompt: list[int], tokens: int) -> dict:
    out = await engine.submit(prompt, SamplingParams(max_tokens=tokens, min_tokens=tokens, temperature=0.0)).result()
    m = out.metrics
    return {"ttft_s": m["time_to_first_token_s"], "decode_s": m["decode_s"] or 0.0, "tokens": len(out.token_ids),
            "cached": m["cached_tokens"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model name or checkpoint folder (default: the default model)")
    parser.add_argument("--prompt", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
