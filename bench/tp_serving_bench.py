"""Tensor parallelism in the serving engine on 2 GPUs (issue 15): one script, one table.

    mkdir -p /tmp/ns/loopls && ln -sfn $PWD/engine /tmp/ns/loopls/engine && ln -sfn $PWD/kernels /tmp/ns/loopls/kernels
    PYTHONPATH=/tmp/ns python3 bench/tp_serving_bench.py     # at most --budget-s (400 s) on nvidia-h200-x2
    python bench/tp_serving_bench.py --cpu-smoke             # every section on 2 CPU ranks (gloo), tiny shapes

Everything runs the language server's serving path: the engine core on rank 0 of a worker
group (one process per GPU) schedules, builds and sends each step once; every rank replays
its decode CUDA graph with the all-reduces inside and samples its vocabulary shard. Random bf16 weights are
built on the GPUs, per tensor-parallel slice with per-unit seeds, so TP=1 and TP=2 hold the
same model (engine/model/random_weights.py). Sections, each in its own worker group with a
deadline; an error is printed and the run goes on:

1. IQuest-Coder-V1-14B shape, TP=1 (GPU 0), per scheduling mode (sync: each step's tokens
   read back before the next is planned; async: the next step planned and launched while
   this one runs, engine/serving/core.py): batch-1 and 32-sequence decode at 2K context,
   step profile, the greedy check.
2. 14B shape, TP=2, per all-reduce variant (NCCL; symmetric memory one-shot; two-shot) and
   scheduling mode: all-reduce latency (56 calls in one graph), decode as above, both ranks'
   step profile (GEMM / attention / all-reduce / other kernels / GPU idle = host), the
   greedy check against TP=1 in the same mode and async against sync (same tokens, max
   |Δlogit|).
3. IQuest-Coder-V1-40B-Loop shape (80 layers x 2 loops, W 64), TP=2, with the all-reduce the
   server picks (`auto`; --loop-all-reduce): batch-1 decode (sync, then async with a
   profile); then under async scheduling: decode at 8/16/24/32 concurrent sequences over the
   deployment report's input lengths (8K-64K, mean 27K; their K/V shared through one cached
   prompt, so each level costs decode steps only), each level with both ranks' step profile
   (all-reduce ms/step and share), the graph batch it replays and its attention split count; the report's cold load at one level (new prompts, 256
   outputs) for as long as the budget allows.
4. The GPU tests of the serving engine (tests/engine: tensor-parallel, CUDA-graph and
   async-scheduling equivalence, pool sizing).

Prints the table, and writes every number to $OUT/tp_serving_bench.json when OUT is set
(also after each section, so a run cut short keeps what it measured).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from loopls.engine.model.config import ModelConfig
from loopls.engine.model.random_weights import random_shard
from loopls.engine.serving.scheduler import SchedulerConfig
from loopls.engine.serving.worker_group import run_driver
from loopls.engine.serving.workers import MULTICAST_OFF, WorkerSpec

import tp_drivers
from tp_report import Report

for _key, _value in MULTICAST_OFF.items():  # never NVLink multicast (shared hosts)
    os.environ.setdefault(_key, _value)

ROOT = Path(__file__).resolve().parents[1]
GPU_TESTS = ["tests/engine/test_tp_serving_gpu.py", "tests/engine/test_serving_equivalence.py",
             "tests/engine/test_serving_memory.py", "-k", "cuda or gpu or gpus"]


def shape(name: str, smoke: bool) -> ModelConfig:
    loop = name == "40b-loop"
    if smoke:
        dims = dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                    num_attention_heads=8, num_key_value_heads=4, head_dim=16, max_position_embeddings=4096)
    else:
        dims = dict(vocab_size=76800, hidden_size=5120, intermediate_size=27648, num_hidden_layers=80 if loop else 28,
                    num_attention_heads=40, num_key_value_heads=8, head_dim=128, max_position_embeddings=131072)
    return ModelConfig(model_type="iquestloopcoder" if loop else "iquestcoder", rope_theta=500000.0,
                       rms_norm_eps=1e-5, loop_num=2 if loop else 1, loop_window_size=(8 if smoke else 64) if loop else 0,
                       **dims)


def spec(config: ModelConfig, world: int, args, driver, all_reduce: str = "nccl", **driver_args) -> WorkerSpec:
    smoke = args.cpu_smoke
    dtype = torch.float32 if smoke else torch.bfloat16
    scheduler = SchedulerConfig(num_blocks=1024 if smoke else 1, block_size=16, max_num_seqs=args.batch,
                                max_step_tokens=args.step_tokens, num_speculative_tokens=0)
    return WorkerSpec(factory=functools.partial(random_shard, config, dtype=dtype, seed=2026), world=world,
                      device="cpu" if smoke else "cuda", scheduler=scheduler, plan_memory=not smoke,
                      all_reduce=all_reduce, driver=driver, driver_args=driver_args)


class Budget:
    """Deadlines so that the whole run, table and JSON included, ends within --budget-s."""

    def __init__(self, total: float) -> None:
        self.end = time.monotonic() + total

    def left(self) -> float:
        return self.end - time.monotonic()

    def take(self, want: float, reserve: float) -> float:
        return max(min(want, self.left() - reserve), 10.0)


def deadline(timeout: float) -> float:
    """The time.monotonic() (one clock for every process of the host) by which a section's
    driver stops starting new measurements, so its result is back before `timeout`."""
    return time.monotonic() + timeout - min(20.0, timeout / 4)


def section(report: Report, name: str, fn) -> None:
    t = time.monotonic()
    print(f"\n== {name}", flush=True)
    try:
        fn()
        report.status[name] = "ok"
    except Exception as exc:  # noqa: BLE001 - one section's failure must not end the run
        report.status[name] = f"{type(exc).__name__}: {exc}"
        print(f"   {name} failed: {report.status[name]}", flush=True)
    print(f"   ({time.monotonic() - t:.0f} s)", flush=True)
    report.save()


def decode_sections(report: Report, args, budget: Budget) -> None:
    config = shape("14b", args.cpu_smoke)
    vocab = config.vocab_size
    check = [tp_drivers.prompt(vocab, args.check_len, 11 + i) for i in range(2)]
    common = dict(batches=[1, args.batch], context=args.context, steps=args.steps, profile_steps=args.profile_steps,
                  check_prompts=check, check_new=args.check_new, ar_rows=[1, args.batch],
                  modes=tuple(args.modes.split(",")))

    def one() -> None:
        timeout = budget.take(args.section_s, args.reserve_s + args.loop_s)
        gemms = half_width_gemms(config) if args.gemm_probe else None
        res = run_driver(spec(config, 1, args, tp_drivers.drive_decode, variants=[None], deadline=deadline(timeout),
                              gemm_shapes=gemms, **common), timeout=timeout)
        report.decode(config, 1, res)

    def two() -> None:
        timeout = budget.take(args.tp2_s, args.reserve_s + args.loop_s)
        res = run_driver(spec(config, 2, args, tp_drivers.drive_decode, variants=args.variants.split(","),
                              deadline=deadline(timeout),
                              **common), timeout=timeout)
        report.decode(config, 2, res)

    section(report, "14B TP=1", one)
    section(report, "14B TP=2", two)


def half_width_gemms(config: ModelConfig) -> list[tuple[int, int]]:
    """(out, in) of a decoder layer's GEMMs as GPU executors run them (q/k/v fused; gate and
    up each alone, and stacked for comparison) and of the LM head, whole and at TP=2 widths."""
    h, d, i = config.hidden_size, config.head_dim, config.intermediate_size
    qkv = (config.num_attention_heads + 2 * config.num_key_value_heads) * d
    column = [(qkv, h), (i, h), (2 * i, h), (config.vocab_size, h)]  # split by output rows
    row = [(h, config.num_attention_heads * d), (h, i)]  # split by input columns
    return column + row + [(o // 2, n) for o, n in column] + [(o, n // 2) for o, n in row]


def loop_section(report: Report, args, budget: Budget) -> None:
    config = shape("40b-loop", args.cpu_smoke)
    levels = [int(x) for x in args.levels.split(",")]
    lengths = (64, 256, 128) if args.cpu_smoke else (8192, 65536, 27 * 1024)

    def run() -> None:
        timeout = budget.take(args.loop_s, args.reserve_s)
        res = run_driver(spec(config, 2, args, tp_drivers.drive_loop, all_reduce=args.loop_all_reduce,
                              context=args.context, steps=args.steps,
                              profile_steps=args.profile_steps, levels=levels, lengths=lengths,
                              decode_steps=args.steps, cold_level=args.cold_level, outputs=args.outputs,
                              cold_seconds=args.cold_s, deadline=deadline(timeout)), timeout=timeout)
        report.loop(config, res)

    section(report, "40B-Loop TP=2", run)


def gpu_tests(report: Report, args, budget: Budget) -> None:
    def run() -> None:
        cmd = [sys.executable, "-m", "pytest", *GPU_TESTS, "-q", "-s", "-p", "no:cacheprovider",
               "-o", "addopts=-ra", "-o", "asyncio_mode=strict"]
        timeout = max(budget.left() - 5, 30)
        try:
            # No plugin autoload: the tests need none, and a broken plugin of the image must not stop them.
            env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
            code, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:  # keep what the finished tests printed
            code, text = None, _text(exc.stdout) + _text(exc.stderr) + f"\npytest killed after {timeout:.0f} s"
        tail = text.strip().splitlines()[-25:]
        print("\n".join("   " + line for line in tail), flush=True)
        report.tests = {"returncode": code, "tail": tail}
        if code not in (0, 5):
            raise RuntimeError(f"pytest exited with {code}")

    section(report, "GPU tests", run)


def _text(out: bytes | str | None) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else out or ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="2 CPU ranks (gloo), tiny shapes, a few steps")
    # Deadlines: a section's driver stops starting measurements before its deadline and
    # returns what it has; one still busy at the deadline is killed and loses its numbers.
    ap.add_argument("--budget-s", type=float, default=400, help="the whole run, tests included")
    ap.add_argument("--section-s", type=float, default=60, help="deadline of the 14B TP=1 section")
    ap.add_argument("--tp2-s", type=float, default=110, help="deadline of the 14B TP=2 section (3 variants)")
    ap.add_argument("--loop-s", type=float, default=140, help="deadline of the 40B-Loop section")
    ap.add_argument("--reserve-s", type=float, default=80, help="kept for the GPU tests")
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=48, help="timed decode steps")
    ap.add_argument("--profile-steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--step-tokens", type=int, default=8192, help="per-step token budget (prefill chunk)")
    ap.add_argument("--check-len", type=int, default=1024)
    ap.add_argument("--check-new", type=int, default=32)
    ap.add_argument("--levels", default="8,16,24,32")
    ap.add_argument("--cold-level", type=int, default=8)
    ap.add_argument("--cold-s", type=float, default=45, help="seconds of the cold load (less if the deadline is near)")
    ap.add_argument("--outputs", type=int, default=256)
    ap.add_argument("--variants", default="nccl,symm-one-shot,symm-fused", help="all-reduce variants at TP=2")
    ap.add_argument("--loop-all-reduce", default="auto",
                    help="all-reduce of the 40B-Loop section (auto: symm-fused where it runs, as the server picks)")
    ap.add_argument("--modes", default="sync,async", help="scheduling modes, each measured in turn; "
                    "a '-cublas' suffix (async-cublas) runs every GEMM on cuBLAS instead of the per-shape choice")
    ap.add_argument("--skip", default="", help="comma list of: 14b, loop, tests")
    ap.add_argument("--gemm-probe", action="store_true",
                    help="time the 14B shape's GEMMs whole and at TP=2 widths with cuBLAS and cuBLASLt (TP=1 section)")
    if ap.parse_known_args()[0].cpu_smoke:  # tiny shapes, CPU-speed deadlines; flags given still win
        ap.set_defaults(context=32, steps=4, profile_steps=2, batch=4, step_tokens=64, check_len=24, check_new=6,
                        levels="2,4", cold_level=2, outputs=8, cold_s=15, section_s=200, tp2_s=300, loop_s=300,
                        reserve_s=120, budget_s=1000)
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    if "loop" in skip:
        args.loop_s = 0  # the 14B sections keep no time back for a section that does not run
    budget = Budget(args.budget_s)
    report = Report(args, os.environ.get("OUT"))
    print(report.header(), flush=True)
    if "14b" not in skip:
        decode_sections(report, args, budget)
    if "loop" not in skip:
        loop_section(report, args, budget)
    if "tests" not in skip:
        gpu_tests(report, args, budget)
    print(report.table(), flush=True)
    report.save()


if __name__ == "__main__":
    main()
