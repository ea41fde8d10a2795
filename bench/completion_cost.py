"""What one completion costs the engine on this machine, in the server's path.

    python bench/completion_cost.py [--model NAME] [--prompt 1024] [--tokens 48] [--repeats 3]
                                    [--engine thread|process|both] [--busy [on|off|both]]
                                    [--threads 1,2] [--omp-wait default,passive,spin1000]
                                    [--cpu-weights fp32,int8]

Loads the model with `load_native`, as the language server does on a CPU (`--engine process`:
the serving engine in a process of its own, `engine_process`) or as `loopls complete` does
(`--engine thread`: on a worker thread of this process), or both, taking turns: paged K/V,
prefix cache. Then submits, like the completion service, token-id
prompts cut from loopls' own `context/*.py`: a cold prompt (nothing cached: the whole
prefill), then the same prompt with its last line changed (the prefix cache holds the rest,
as after the warm-up) generating `--tokens` tokens greedily. Prints one row per repeat,
with the load average: the machine may be shared. Beside the wall times, the CPU time the
engine spent per decoded token (this process's, nearly all the engine thread's, or the
engine process's): on a shared machine it moves much less with the load than the wall time
does. `--busy` keeps a pure-Python thread of this process busy meanwhile (with the server's
GIL switch interval), as the server's own work does (prompt building, the event loop): the
engine thread then waits for the interpreter lock between its torch calls; the engine
process does not. `--cpu-weights fp32,int8` loads one engine per value (`model.cpuWeights`),
taking turns like the engines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

from loopls.engine.backends.base import BackendConfig
from loopls.engine.backends import native
from loopls.engine.backends.native import load_native
from loopls.engine.model.sampling_params import SamplingParams
from loopls.lsp.cli import SWITCH_INTERVAL_S

ROOT = Path(__file__).resolve().parents[1]
TAIL = 16  # tokens of the "line being typed": what the warm request computes


async def measure(args: argparse.Namespace) -> None:
    kinds = ("thread", "process") if args.engine == "both" else (args.engine,)
    grid = args.threads is not None or args.omp_wait is not None
    if grid and "thread" in kinds:
        raise SystemExit("--threads and --omp-wait apply to engine processes: use --engine process")
    if grid and args.cpu_weights != ["fp32"]:
        raise SystemExit("--cpu-weights does not combine with --threads or --omp-wait")
    backends = {}
    if grid:
        for threads in args.threads or [native.cpu_threads()]:
            for wait in args.omp_wait or ["default"]:
                with _worker_settings(threads, wait):
                    backends[f"process, {threads} thread{'s' if threads > 1 else ''}, wait {wait}"] = load_native(
                        BackendConfig(kind="native", model=args.model, device="cpu", context_tokens=2048,
                                      engine_process=True))
    else:
        weights = args.cpu_weights
        backends = {kind + (f", {w}" if len(weights) > 1 else ""): load_native(BackendConfig(
            kind="native", model=args.model, device="cpu", context_tokens=2048, engine_process=kind == "process",
            cpu_weights=w)) for kind in kinds for w in weights}
    backend = next(iter(backends.values()))
    text = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "context").glob("*.py")))
    ids = backend.tokenizer.encode(text)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.busy]
    cells = [(name + (" + busy thread" if busy else ""), b.engine, busy) for busy in modes for name, b in backends.items()]
    stop, busy_now = threading.Event(), threading.Event()
    if True in modes:
        sys.setswitchinterval(SWITCH_INTERVAL_S)  # as the language server runs
        threading.Thread(target=_busy, args=(stop, busy_now), daemon=True).start()
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}; model {backend.info.model} ({backend.info.path})")
    print("| engine | cold prefill of the prompt | warm: time to first token | decode per token | CPU per token "
          "| load |")
    print("|---|---|---|---|---|---|")
    decode: dict[str, list[float]] = {name: [] for name, _, _ in cells}
    prefill: dict[str, list[float]] = {name: [] for name, _, _ in cells}
    try:
        for rep in range(args.repeats):
            for mode, busy in enumerate(modes):
                if busy:
                    busy_now.set()
                else:
                    busy_now.clear()
                for name, engine, cell_busy in cells:
                    if cell_busy != busy:
                        continue
                    # a fresh prompt for each engine's cache, the same for every engine
                    prompt = ids[(rep * len(modes) + mode) * 97:][:args.prompt]
                    cold = await _run(engine, prompt, 1)
                    cpu = _cpu(engine, busy)
                    warm = await _run(engine, prompt[:-TAIL] + prompt[-TAIL:][::-1], args.tokens)
                    cpu = _cpu(engine, busy) - cpu
                    per_token = warm["decode_s"] / max(1, warm["tokens"] - 1)
                    decode[name].append(per_token)
                    prefill[name].append(cold["ttft_s"])
                    cpu_cell = f"{1000 * cpu / warm['tokens']:.1f} ms" if cpu == cpu else "-"  # NaN: not measured
                    print(f"| {name} | {1000 * cold['ttft_s']:.0f} ms ({len(prompt)} tokens) | "
                          f"{1000 * warm['ttft_s']:.0f} ms ({len(prompt) - warm['cached']} computed) | "
                          f"{1000 * per_token:.1f} ms ({warm['tokens']} tokens) | {cpu_cell} | "
                          f"{os.getloadavg()[0]:.1f} |", flush=True)
    finally:
        stop.set()
        busy_now.set()  # let the busy thread see `stop`
        for b in backends.values():
            b.shutdown()
    for name, values in decode.items():
        print(f"# {name}: decode median {1000 * statistics.median(values):.1f} ms/token, "
              f"cold prefill median {1000 * statistics.median(prefill[name]):.0f} ms")


@contextlib.contextmanager
def _worker_settings(threads: int, wait: str):
    """An engine process started inside this block runs `threads` torch threads and the
    OpenMP wait policy `wait` (its environment at start; this process's is restored after)."""
    env = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}.get(wait)
    if env is None:
        if not (wait.startswith("spin") and wait[4:].isdigit()):
            raise SystemExit(f"--omp-wait: {wait!r} is not default, passive or spinN")
        env = {"GOMP_SPINCOUNT": wait[4:]}
    saved_env = {key: os.environ.get(key) for key in env}
    saved_threads = native.cpu_threads
    os.environ.update(env)
    native.cpu_threads = lambda: threads  # what load_native gives the engine process
    try:
        yield
    finally:
        native.cpu_threads = saved_threads
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _busy(stop: threading.Event, busy_now: threading.Event) -> None:
    """Pure-Python work that holds the interpreter, as the server's own threads do (while
    `busy_now` is set)."""
    n = 0
    while not stop.is_set():
        busy_now.wait()
        for i in range(10_000):
            n = (n * 31 + i) % 1_000_003


def _cpu(engine, busy: bool) -> float:
    """CPU seconds the engine has used: its process's (Linux), or this process's for an engine
    thread (NaN while a busy thread runs here too: its time would count)."""
    pids = getattr(engine, "pids", None)
    if pids:
        fields = Path(f"/proc/{pids[0]}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan") if busy else time.process_time()


async def _run(engine, prompt: list[int], tokens: int) -> dict:
    out = await engine.submit(prompt, SamplingParams(max_tokens=tokens, min_tokens=tokens, temperature=0.0)).result()
    m = out.metrics
    return {"ttft_s": m["time_to_first_token_s"], "decode_s": m["decode_s"] or 0.0, "tokens": len(out.token_ids),
            "cached": m["cached_tokens"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model name or checkpoint folder (default: the default model)")
    parser.add_argument("--cpu-weights", type=lambda v: v.split(","), default=["fp32"],
                        help="model.cpuWeights values, one engine each (e.g. fp32,int8)")
    parser.add_argument("--prompt", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine", choices=("thread", "process", "both"), default="both",
                        help="the engine on a thread of this process, in a process of its own, or both in turns")
    parser.add_argument("--busy", nargs="?", const="on", default="off", choices=("off", "on", "both"),
                        help="keep a pure-Python thread of this process busy meanwhile (both: each engine idle, then busy)")
    parser.add_argument("--threads", type=_int_list, default=None,
                        help="engine processes with these torch thread counts, e.g. 1,2 (default: cpu_threads())")
    parser.add_argument("--omp-wait", type=lambda v: v.split(","), default=None,
                        help="engine processes with these OpenMP wait policies: default, passive, spinN (GOMP_SPINCOUNT)")
    asyncio.run(measure(parser.parse_args()))


def _int_list(value: str) -> list[int]:
    try:
        numbers = [int(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of numbers") from None
    if any(n < 1 for n in numbers):
        raise argparse.ArgumentTypeError("thread counts are at least 1")
    return numbers


if __name__ == "__main__":
    main()
