"""The tensor-parallel serving scenario shared by the CPU and GPU tests: what rank 0 runs
through the engine core (a driver function, workers.WorkerSpec.driver), and the same on one
rank in process."""

from __future__ import annotations

import torch

from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.serving.core import EngineCore

GREEDY = SamplingParams(max_tokens=12, min_tokens=12)


def scenario(core: EngineCore, record_logits: bool = True) -> dict:
    """Ragged batches, a prefix hit, a speculative draft, seeded top-k and top-p sampling, a cancellation;
    records every sampled row's logits and counts the steps that fed a pending token."""
    logits: dict[str, list[torch.Tensor]] = {}

    def recording(plan, step, out):
        # Copying logits to the host waits for the step: without it a GPU overlaps steps fully.
        for item, (first, count) in zip(plan.items, step.item_rows):
            if count:
                logits.setdefault(item.seq.request_id, []).append(out[first : first + count].float().cpu().clone())

    if record_logits:
        core.runner.record = recording
    build = core.runner.builder.build
    fed: list[int] = []  # steps that took a pending token from the device (async scheduling)

    def counting(*args, **kw):
        step = build(*args, **kw)
        fed.append(step.feed is not None)
        return step

    core.runner.builder.build = counting
    g = torch.Generator().manual_seed(7)
    vocab = core.model_config.vocab_size
    prompts = [torch.randint(20, vocab, (n,), generator=g).tolist() for n in (5, 40, 77, 23, 18)]
    seqs = {}

    def add(rid: str, prompt: list[int], params: SamplingParams = GREEDY) -> None:
        seqs[rid] = core.add(rid, prompt, params)

    def drain() -> None:
        while core.has_work:
            core.step()

    add("a0", prompts[0])
    add("a1", prompts[1])
    core.step()
    core.step()
    add("a2", prompts[2])  # joins while the others decode: ragged steps
    add("a3", prompts[3])
    drain()
    add("hit", prompts[2] + prompts[4])  # its first 72 tokens are cached blocks
    add("spec", prompts[4][:6] * 8, SamplingParams(max_tokens=16, min_tokens=16))  # drafts from repetition
    add("sampled", prompts[3], SamplingParams(max_tokens=10, min_tokens=10, temperature=1.0, top_k=20, seed=5))
    add("nucleus", prompts[0] + prompts[3], SamplingParams(max_tokens=8, min_tokens=8, temperature=0.8, top_p=0.9, seed=8))
    drain()
    add("cancel", prompts[1] + prompts[0], SamplingParams(max_tokens=30, min_tokens=30))
    while len(seqs["cancel"].output_ids) < 3:
        core.step()
    core.abort("cancel")
    add("after", prompts[1] + prompts[0] + [33])  # finds the cancelled request's blocks
    drain()
    return {
        "tokens": {rid: s.output_ids for rid, s in seqs.items()},
        "finish": {rid: s.finish_reason for rid, s in seqs.items()},
        "cached": {rid: s.metrics.cached_tokens for rid, s in seqs.items()},
        "drafts": [(s.metrics.draft_tokens, s.metrics.accepted_draft_tokens) for s in seqs.values()],
        "logits": {rid: torch.cat(rows) for rid, rows in logits.items()},
        "blocks_used": core.pool.num_used,
        "kv_pool_bytes": core.stats()["kv_pool_bytes"],
        "fed_steps": sum(fed),
        "steps": len(fed),
    }


def drive_scenario(session) -> dict:
    return scenario(session.core) | {"info": {k: str(v) for k, v in session.info.items()}}


def drive_unseeded(session, prompts: list[list[int]]) -> dict:
    """Sampled requests without a seed under async scheduling: each rank draws the tokens
    itself and feeds them to the next step, so a rank drawing differently would corrupt the
    sums. Returns the tokens and the logits of every sampled row."""
    core = session.core
    core.async_scheduling = True
    rows: dict[str, list[torch.Tensor]] = {}

    def recording(plan, step, out):
        for item, (first, count) in zip(plan.items, step.item_rows):
            if count:
                rows.setdefault(item.seq.request_id, []).append(out[first + count - 1].float().cpu().clone())

    core.runner.record = recording
    # min_tokens: an unseeded draw of a stop token first would leave a request nothing to compare
    params = [SamplingParams(max_tokens=10, min_tokens=1, temperature=1.0),
              SamplingParams(max_tokens=10, min_tokens=1, temperature=0.7, top_k=30),
              SamplingParams(max_tokens=10, min_tokens=1, temperature=1.2, top_p=0.8)]
    seqs = [core.add(f"u{i}", p, params[i % len(params)]) for i, p in enumerate(prompts)]
    while core.has_work:
        core.step()
    return {"tokens": [s.output_ids for s in seqs], "logits": [torch.stack(rows[s.request_id]) for s in seqs]}
