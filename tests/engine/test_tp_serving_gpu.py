"""Tensor parallelism in the serving engine on two GPUs (NCCL), skipped without them.

- fp32, a small shape, decode CUDA graphs on: two ranks give exactly the tokens of one GPU,
  with every all-reduce variant (NCCL and PyTorch symmetric memory, one-shot and two-shot, and
  the one-shot with the residual add and RMSNorm fused into it: kernels/symm_norm.py).
- bf16, the IQuest-Coder-V1-14B shape: two ranks' logits stay within the bf16 tolerance
  T = 2 x (largest difference between one GPU's bf16 logits and an fp32 twin of the same
  weights): TP=2 may sum in another order, but must not be further from exact arithmetic
  than twice what bf16 costs one GPU. Where a greedy token differs, the top-2 logit margin at
  that position must be below 2T (a near tie that the rounding decides) and the rows' difference
  within T; the margins are printed.
Random weights are built on the GPUs per tensor-parallel slice (engine/model/random_weights.py),
so every run holds the same model.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import functools
import os

import pytest
import torch

from loopls.engine.model.config import ModelConfig
from loopls.engine.model.random_weights import random_shard
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.serving.scheduler import SchedulerConfig
from loopls.engine.serving.worker_group import run_driver
from loopls.engine.serving.workers import MULTICAST_OFF, WorkerSpec

from tp_scenario import scenario

for _key, _value in MULTICAST_OFF.items():
    os.environ.setdefault(_key, _value)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices"),
]
MODES = ("nccl", "symm-one-shot", "symm-two-shot", "symm-fused", "auto")


def small_config(arch: str) -> ModelConfig:
    loop = arch == "iquestloopcoder"
    return ModelConfig(
        model_type=arch, vocab_size=4096, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
        num_attention_heads=16, num_key_value_heads=4, head_dim=64, max_position_embeddings=8192,
        rope_theta=500000.0, rms_norm_eps=1e-5, loop_num=2 if loop else 1, loop_window_size=16 if loop else 0,
    )


def iquest_14b() -> ModelConfig:
    return ModelConfig(
        model_type="iquestcoder", vocab_size=76800, hidden_size=5120, intermediate_size=27648,
        num_hidden_layers=28, num_attention_heads=40, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
    )


def _spec(config: ModelConfig, world: int, dtype: torch.dtype, driver, scheduler: SchedulerConfig, **kw) -> WorkerSpec:
    factory = functools.partial(random_shard, config, dtype=dtype, seed=11, **kw)
    return WorkerSpec(factory=factory, world=world, device="cuda", scheduler=scheduler, plan_memory=False,
                      all_reduce="nccl", driver=driver)


def drive_modes(session) -> dict:
    """The serving scenario once per all-reduce variant (the first run is plain NCCL)."""
    out = {}
    for mode in MODES if session.group.world > 1 else ("none",):
        info = session.rebuild(all_reduce=mode) if mode != "none" else session.info
        out[mode] = scenario(session.core) | {"running": info["all_reduce"], "error": info["all_reduce_error"],
                                              "graphs": info["graphs"]}
    return out


@pytest.mark.timeout(600)
@pytest.mark.parametrize("arch", ["iquestcoder", "iquestloopcoder"])
def test_fp32_two_gpus_give_the_tokens_of_one(arch: str) -> None:
    config = small_config(arch)
    scheduler = SchedulerConfig(num_blocks=512, block_size=16, max_step_tokens=64, max_num_seqs=8)
    one = run_driver(_spec(config, 1, torch.float32, drive_modes, scheduler), timeout=300)["none"]
    two = run_driver(_spec(config, 2, torch.float32, drive_modes, scheduler), timeout=500)
    assert one["graphs"]
    for mode, got in two.items():
        assert got["error"] == "", f"{mode}: {got['error']}"
        assert got["running"] == (mode if mode != "auto" else "symm-fused"), mode
        assert got["graphs"], f"{mode}: decode graphs were not captured"
        assert got["tokens"] == one["tokens"], mode
        for rid, rows in one["logits"].items():
            torch.testing.assert_close(got["logits"][rid], rows, rtol=0, atol=1e-3, msg=f"{mode} {rid}")
        assert got["blocks_used"] == 0


def drive_scheduling(session) -> dict:
    """The serving scenario without drafts: synchronous, then async scheduling with logits
    recorded, then async without (nothing then waits for a step: steps overlap fully)."""
    faulthandler.dump_traceback_later(100)  # a hang shows rank 0's stack before the test's timeout
    out = {}
    for name, overlap, record in (("sync", False, True), ("async", True, True), ("async-free", True, False)):
        session.rebuild(async_scheduling=overlap)
        out[name] = scenario(session.core, record_logits=record)
    faulthandler.cancel_dump_traceback_later()
    return out


@pytest.mark.timeout(300)
@pytest.mark.parametrize("arch", ["iquestcoder", "iquestloopcoder"])
def test_fp32_async_scheduling_gives_the_tokens_of_sync_on_two_gpus(arch: str) -> None:
    """Async == sync on two GPUs (one GPU: test_serving_equivalence.py's CUDA-graph test)."""
    config = small_config(arch)
    scheduler = SchedulerConfig(num_blocks=512, block_size=16, max_step_tokens=64, max_num_seqs=8,
                                num_speculative_tokens=0)
    two = run_driver(_spec(config, 2, torch.float32, drive_scheduling, scheduler), timeout=120)
    ref = two["sync"]
    ref_cancel = ref["tokens"]["cancel"]
    assert ref["fed_steps"] == 0
    for name in ("async", "async-free"):
        got = two[name]
        tokens = dict(got["tokens"])
        assert tokens.pop("cancel")[: len(ref_cancel)] == ref_cancel, name  # read back late: maybe more
        assert tokens == {k: v for k, v in ref["tokens"].items() if k != "cancel"}, name
        assert got["blocks_used"] == 0 and got["fed_steps"] > got["steps"] // 2, name
        for rid, rows in ref["logits"].items() if name == "async" else ():
            n = min(len(rows), len(got["logits"][rid]))
            torch.testing.assert_close(got["logits"][rid][:n], rows[:n], rtol=0, atol=1e-3, msg=f"{name} {rid}")


def drive_greedy(session, prompts: list[list[int]], new: int) -> dict:
    core = session.core
    logits: dict[str, list[torch.Tensor]] = {}

    def recording(plan, step, out):
        for item, (first, count) in zip(plan.items, step.item_rows):
            if count:
                logits.setdefault(item.seq.request_id, []).append(out[first : first + count].float().cpu())

    core.runner.record = recording
    seqs = [core.add(f"p{i}", p, SamplingParams(max_tokens=new, min_tokens=new)) for i, p in enumerate(prompts)]
    while core.has_work:
        core.step()
    return {"tokens": [s.output_ids for s in seqs], "logits": [torch.cat(logits[s.request_id]) for s in seqs],
            "all_reduce": session.info["all_reduce"]}


@pytest.mark.timeout(600)
def test_bf16_14b_shape_two_gpus_stay_within_bf16_tolerance() -> None:
    config = iquest_14b()
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(20, config.vocab_size, (n,), generator=gen).tolist() for n in (512, 1024, 2000)]
    new = 24
    scheduler = SchedulerConfig(num_blocks=2048, block_size=16, max_step_tokens=2048, max_num_seqs=4,
                                num_speculative_tokens=0)
    args = {"prompts": prompts, "new": new}

    def run(world: int, dtype: torch.dtype, **kw) -> dict:
        spec = _spec(config, world, dtype, drive_greedy, scheduler, **kw)
        return run_driver(dataclasses.replace(spec, all_reduce="auto", driver_args=args), timeout=400)

    exact = run(1, torch.float32, rounded_to=torch.bfloat16)  # the bf16 weights, fp32 arithmetic
    one = run(1, torch.bfloat16)
    two = run(2, torch.bfloat16)
    # First rows: the prefill's last position, where both runs saw exactly the same inputs.
    first = lambda r, i: r["logits"][i][0]  # noqa: E731
    err_one = max((first(one, i) - first(exact, i)).abs().max().item() for i in range(len(prompts)))
    err_two = max((first(two, i) - first(exact, i)).abs().max().item() for i in range(len(prompts)))
    tol = 2 * err_one
    diff = max((first(two, i) - first(one, i)).abs().max().item() for i in range(len(prompts)))
    print(f"\nbf16 14B shape, all-reduce {two['all_reduce']}: max|TP1-fp32| {err_one:.4f}, "
          f"max|TP2-fp32| {err_two:.4f}, max|TP2-TP1| {diff:.4f}, tolerance T {tol:.4f}")
    assert diff <= tol and err_two <= tol
    for i, (a, b) in enumerate(zip(one["tokens"], two["tokens"])):
        k = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), None)
        if k is None:
            print(f"prompt {i}: {len(a)} identical greedy tokens")
            continue
        row_one, row_two = one["logits"][i][k], two["logits"][i][k]
        top = row_one.topk(2).values
        margin = (top[0] - top[1]).item()
        row_diff = (row_two - row_one).abs().max().item()
        print(f"prompt {i}: first divergence at token {k}: top-2 margin {margin:.4f}, max|Δ| of that row {row_diff:.4f}")
        assert margin <= 2 * tol and row_diff <= tol, (i, k, margin, row_diff)
