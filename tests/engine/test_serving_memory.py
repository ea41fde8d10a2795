"""Memory: a step that really runs out of memory fails only its own requests; on a GPU the
pool is sized from measured steps and the largest step then fits beside a full pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.tiny import create_tiny
from loopls.engine.serving.core import EngineCore
from loopls.engine.serving.memory import plan_pool
from loopls.engine.serving.scheduler import SchedulerConfig

# Run in a child process: the address-space limit must not touch the test runner.
_OOM_CHILD = textwrap.dedent('''
    import json, resource, sys
    import torch
    from loopls.engine.model.loader import load_checkpoint
    from loopls.engine.model.sampling_params import SamplingParams
    from loopls.engine.serving.core import EngineCore
    from loopls.engine.serving.scheduler import SchedulerConfig

    torch.set_num_threads(1)
    lm = load_checkpoint(sys.argv[1])
    config = SchedulerConfig(num_blocks=1200, block_size=16, max_step_tokens=16384, num_speculative_tokens=0)
    core = EngineCore(lm.model, config, eos_ids=tuple(lm.tokenizer.special.eos_ids))
    params = SamplingParams(max_tokens=8, min_tokens=8)
    small = list(range(40, 90))

    def run(rid, prompt):
        seq = core.add(rid, prompt, params)
        while core.has_work:
            core.step()
        return seq

    before = run("before", small).output_ids  # every allocation path of a small step is warm
    vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:"))
    # 64 MiB more address space: a small step fits, a 16K-token prefill chunk does not (the
    # plain-torch attention alone builds a 16K x 16K mask).
    resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + (64 << 20), resource.RLIM_INFINITY))
    big = run("big", [20 + i % 400 for i in range(16000)])
    blocks_after_failure = core.pool.num_used
    after = run("after", small)
    print(json.dumps({
        "big": [big.finish_reason, big.error], "before": before, "after": after.output_ids,
        "after_reason": after.finish_reason, "failed_steps": core.failed_steps,
        "blocks_after_failure": blocks_after_failure, "blocks_used": core.pool.num_used,
    }))
''')


def test_a_step_out_of_memory_fails_its_request_and_the_engine_serves_on(tmp_path) -> None:
    folder = create_tiny(tmp_path / "m", "iquestcoder", overrides={"max_position_embeddings": 32768})
    env = dict(os.environ, MALLOC_ARENA_MAX="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", _OOM_CHILD, str(folder)], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    reason, error = out["big"]
    assert reason == "error" and "allocate" in error  # the CPU allocator's own out-of-memory error
    assert out["failed_steps"] == 1 and out["blocks_after_failure"] == 0
    assert out["after_reason"] == "length" and out["after"] == out["before"]
    assert out["blocks_used"] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_pool_is_sized_beside_a_measured_worst_step(tmp_path) -> None:
    lm = load_checkpoint(create_tiny(tmp_path / "m", "iquestloopcoder",
                                     overrides={"max_position_embeddings": 8192}), device="cuda", dtype="bfloat16")
    config = SchedulerConfig(block_size=16, max_step_tokens=2048, max_num_seqs=8)
    plan = plan_pool(lm.model, config, utilization=0.5)
    assert plan.prefill_peak > 0 and plan.decode_peak > 0 and plan.num_blocks > 100
    free, total = torch.cuda.mem_get_info()
    assert plan.num_blocks * plan.block_bytes <= 0.5 * total
    # Taken for real: the pool, then the largest prefill chunk and a full decode batch.
    config = SchedulerConfig(block_size=16, max_step_tokens=2048, max_num_seqs=8, num_blocks=plan.num_blocks)
    core = EngineCore(lm.model, config, eos_ids=tuple(lm.tokenizer.special.eos_ids))
    params = SamplingParams(max_tokens=4, min_tokens=4)
    for i in range(8):
        core.add(f"r{i}", [20 + (i * 7 + j) % 300 for j in range(2049 if i == 0 else 30)], params)
    while core.has_work:
        core.step()
    assert core.failed_steps == 0 and core.pool.num_used == 0
