"""Run in the vLLM venv by test_vllm.py: loopls's `vllm` backend (vLLM's async engine in this
process) generates for each checkpoint; prints one JSON object on the last line of stdout.

usage: python vllm_inprocess.py '{"checkpoints": {"arch": "dir", ...}, "prompt": [...], "max_tokens": N}'
"""

from __future__ import annotations

import asyncio
import json
import sys

from loopls.engine.backends import BackendConfig, load_backend
from loopls.engine.backends.base import SamplingParams


async def _greedy(backend, prompt: list[int], max_tokens: int) -> dict:
    stream = backend.submit(prompt, SamplingParams(max_tokens=max_tokens))
    streamed = [t async for t in stream]
    out = await stream.result()
    return {"streamed": streamed, "tokens": out.token_ids, "finish": out.finish_reason}


async def _cancel_and_supersede(backend, prompt: list[int]) -> dict:
    long = backend.submit(prompt, SamplingParams(max_tokens=2000, min_tokens=2000))
    async for _ in long:
        break  # it is generating
    long.cancel()
    cancelled = await long.result()
    first = backend.submit(prompt, SamplingParams(max_tokens=2000, min_tokens=2000), supersede="doc")
    second = backend.submit(prompt, SamplingParams(max_tokens=3), supersede="doc")
    superseded, kept = await first.result(), await second.result()
    await asyncio.sleep(0.5)
    return {
        "cancelled": [cancelled.finish_reason, len(cancelled.token_ids)],
        "superseded": superseded.finish_reason,
        "kept": [kept.finish_reason, len(kept.token_ids)],
        "running_after": backend.stats()["running"],
    }


def main(spec: dict) -> dict:
    results = {}
    for arch, folder in spec["checkpoints"].items():
        backend = load_backend(BackendConfig(kind="vllm", model=folder, tensor_parallel_size=1))
        try:
            entry = asyncio.run(_greedy(backend, spec["prompt"], spec["max_tokens"]))
            entry["info"] = [backend.info.backend, backend.info.model_type, backend.info.device]
            entry["context_limit"] = backend.context_limit
            if arch == "iquestloopcoder":
                entry["lifecycle"] = asyncio.run(_cancel_and_supersede(backend, spec["prompt"]))
            results[arch] = entry
        finally:
            backend.shutdown()
    return results


if __name__ == "__main__":  # vLLM spawns processes: the guard is required
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
