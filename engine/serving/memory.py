"""Sizing the K/V pool of a GPU from a measured worst-case step.

The pool takes what is left once everything else is accounted for, so that no step can run
out of memory:

    pool = total * utilization - memory in use (weights, other processes)
           - peak of a worst-case step - the decode graphs' memory

The worst-case step is measured, not estimated: a throw-away engine runs the two largest
steps the scheduler can build, one prefill chunk of `max_step_tokens` tokens and one decode
of `max_num_seqs` sequences, and `torch.cuda.max_memory_allocated` gives each one's peak
(activations, attention workspace, logits, sampling). Logits of speculative draft rows, which
a dummy step does not produce, are added by count. The scheduler then keeps every step within
what was measured: at most `max_step_tokens` tokens and `max_num_seqs` sequences per step,
and K/V only in the pool's blocks (admission and preemption, scheduler.py).

Under tensor parallelism every rank measures its own peaks during the same probe steps
(rank 0 drives them, the others run them as any step) and computes its own pool; all ranks
then take the smallest, since they share one block table.

The decode graphs' private memory is bounded by the decode step's peak, which is reserved
for it. The plain-torch attention reference gathers every key of a sequence (its memory grows
with the context); the Triton kernels read blocks in place, so with them the measured peak
holds for any context length.
"""

from __future__ import annotations

import dataclasses
import gc
from dataclasses import dataclass

import torch

from ..model.attention import PagedKV
from ..model.sampling_params import SamplingParams
from .core import EngineCore
from .scheduler import SchedulerConfig

UTILIZATION = 0.9  # share of the card's memory the engine may use (as vLLM's default)


@dataclass(frozen=True)
class MemoryPlan:
    total: int  # bytes on the card
    in_use: int  # bytes in use before the pool: the weights, other processes
    prefill_peak: int  # bytes a max_step_tokens prefill chunk allocates beyond that
    decode_peak: int  # bytes a max_num_seqs decode step allocates (also the graphs' reserve)
    draft_logits: int  # bytes of the speculative rows' logits
    block_bytes: int
    num_blocks: int

    def describe(self) -> str:
        gib = 1 << 30
        return (
            f"{self.num_blocks} K/V blocks ({self.num_blocks * self.block_bytes / gib:.1f} GiB) of "
            f"{self.total / gib:.1f} GiB: {self.in_use / gib:.1f} GiB in use, worst step "
            f"{max(self.prefill_peak, self.decode_peak) / gib:.2f} GiB, graphs "
            f"{self.decode_peak / gib:.2f} GiB, draft logits {self.draft_logits / gib:.2f} GiB"
        )


def plan_pool(model, config: SchedulerConfig, utilization: float = UTILIZATION, group=None) -> MemoryPlan:
    """How many blocks of `config.block_size` fit on `model`'s GPU beside a worst-case step;
    with `group` (tensor-parallel rank 0, workers.RankGroup), on every rank's GPU."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        raise ValueError("the K/V pool is sized from measured steps on a GPU only")
    if group is not None:
        group.probing = True  # the other ranks record their peaks of the probe steps
    try:
        prefill, decode = _step_peaks(model, config, group)
    finally:
        if group is not None:
            group.probing = False
    if group is None:
        gc.collect()
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info(device)
        return _plan(model, config, utilization, prefill, decode, free, total)
    # Every rank drops its probe pool and reports (its probe peaks, free, total); rank 0's
    # own entry comes first and carries no peaks (they were measured around whole steps).
    reports = group.call("memory_report")
    plans = [_plan(model, config, utilization, prefill, decode, *reports[0][1:])]
    plans += [_plan(model, config, utilization, peaks[0], peaks[-1], free, total) for peaks, free, total in reports[1:]]
    return min(plans, key=lambda p: p.num_blocks)


def _plan(model, config: SchedulerConfig, utilization: float, prefill: int, decode: int, free: int, total: int) -> MemoryPlan:
    cfg = model.config
    draft_rows = config.max_num_seqs * config.num_speculative_tokens
    draft_logits = 2 * draft_rows * cfg.vocab_size * 4  # fp32 logits and their softmax
    attn = model.model.layers[0].self_attn
    block_bytes = PagedKV.block_bytes(
        cfg.num_hidden_layers, config.block_size, attn.num_kv_heads, attn.head_dim, next(model.parameters()).dtype
    )
    in_use = total - free
    budget = int(total * utilization) - in_use - max(prefill, decode) - decode - draft_logits
    return MemoryPlan(total, in_use, prefill, decode, draft_logits, block_bytes, max(budget // block_bytes, 0))


def _step_peaks(model, config: SchedulerConfig, group=None) -> tuple[int, int]:
    """Peak bytes of a max_step_tokens prefill chunk and of a max_num_seqs decode step, each
    beyond what was allocated before it, on a throw-away engine with just enough blocks."""
    chunk, seqs = config.max_step_tokens, config.max_num_seqs
    bs = config.block_size
    loops = 1 + (model.config.loop_num - 1 if model.config.is_loop else 0)
    blocks = loops * (-(-(chunk + model.config.loop_window_size) // bs) + 2 + 2 * seqs)
    probe = dataclasses.replace(
        config, num_blocks=blocks, num_speculative_tokens=0, enable_prefix_caching=False, cuda_graphs=False,
        async_scheduling=False,  # one step at a time: each peak is measured around its own step
    )
    core = EngineCore(model, probe, group=group)
    one = SamplingParams(max_tokens=1)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, vocab, (chunk + 1,), generator=gen).tolist()
    core.add("prefill", prompt, SamplingParams(max_tokens=1))
    prefill = _peak(core)  # the whole chunk in one step (the other ranks' first peak)
    core.abort("prefill")
    for i in range(seqs):
        core.add(f"decode{i}", [int(t) for t in torch.randint(0, vocab, (1,), generator=gen)], one)
    decode = _peak(core)  # one token for each of max_num_seqs sequences (their second)
    del core
    return prefill, decode


def _peak(core) -> int:
    device = core.runner.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    core.step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before
