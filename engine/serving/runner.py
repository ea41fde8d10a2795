"""Model runner: turns a scheduler `StepPlan` into one packed forward and the sampled tokens.

It owns the step builder and a `StepExecutor` (executor.py: the K/V tensors, loop-0 and Loop
window blocks alike, and on CUDA the decode graphs); it never decides who runs. A plain
decode step (one token per sequence) replays a captured CUDA graph padded to the next
captured batch size; any other step (prefill chunks, drafts, a CPU) runs eagerly. Sampling
runs on the device for the whole batch (the executor: greedy rows inside the graph, rows with
a temperature drawn after it) and the step ends with one host sync, which reads every token
at once. After a step it advances every sequence's progress (`num_computed`) and
returns the tokens each sampling sequence produced; appending them, stop rules and block
registration are the engine core's job.

Tensor parallelism (`group`, workers.py): this runner lives on rank 0. Each step it sends the
built step to the other ranks once, before running its own share; every rank's executor holds
its heads' K/V under the same block ids and its vocabulary shard of the LM head, and samples
the step as rank 0 does: the step carries each drawn row's parameters and its generator's
state, so every rank draws the same noise. A failed step leaves the ranks out of step with
each other, so it is not recoverable here: the engine core re-raises it and the worker group
is restarted.

Async scheduling (core.py) splits `run` in two: `launch` queues the forward and the sampling
and starts copying the tokens back (pinned memory, an event), returning at once; `collect`
waits for that copy. A step launched before the previous one was collected feeds the
previous step's tokens from the device (`HostStep.feed`): every rank sampled them itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..model.attention import PagedKV
from ..model.config import ModelConfig
from ..model.sampling_params import SamplingParams
from .batch import HostStep, StepBuilder, is_plain_decode
from .executor import StepExecutor
from .graphs import DecodeGraphs
from .scheduler import ScheduledSeq, SchedulerConfig, StepPlan
from .sequence import Sequence
from .spec import accept_greedy, update_draft_limit


@dataclass
class Launched:
    """A step queued on the device whose sampled tokens are on their way back."""

    plan: StepPlan
    step: HostStep
    host: torch.Tensor  # int64 [R]: the sampled tokens, valid once `ready` has passed
    ready: torch.cuda.Event | None  # None on a CPU (the step ran synchronously)
    # id(seq) -> (chosen [n], top values [n, k], top ids [n, k]) on the device, for the rows
    # of sequences that asked for log-probabilities (params.logprobs)
    logprobs: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def tokens(self) -> list[int]:
        if self.ready is not None:
            self.ready.synchronize()
        return self.host.tolist()


class ModelRunner:
    def __init__(self, model, config: SchedulerConfig, stop_ids: tuple[int, ...] = (), group=None) -> None:
        self.model = model
        self.config: ModelConfig = model.config
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.window_loops = self.config.loop_num - 1 if self.config.is_loop else 0
        self.group = group  # workers.RankGroup: the other tensor-parallel ranks (None: alone)
        self.recoverable = group is None  # a failed step leaves other ranks waiting in a collective
        self.builder = StepBuilder(
            config.block_size, self.window_loops, self.config.max_position_embeddings, journal=group is not None,
            stop_ids=tuple(stop_ids),
        )
        kinds, width = self.builder.kinds, self.builder.width
        if group is None:
            self.executor = StepExecutor(model, config, kinds, width)
        else:
            self.executor = group.build_executor(config, kinds, width)
        # Called with every step's whole logits rows [R, vocab] (tests and benchmarks compare
        # them); under tensor parallelism every rank then gathers its shards.
        self.record: Callable[[StepPlan, HostStep, torch.Tensor], None] | None = None
        self.draft_ceiling = config.num_speculative_tokens
        # id(seq) -> its row of the last launched step's sampled tokens (what a step launched
        # before that one is collected feeds from the device)
        self._rows: dict[int, int] = {}

    @property
    def kv(self) -> PagedKV:
        return self.executor.kv

    @property
    def graphs(self) -> DecodeGraphs | None:
        return self.executor.graphs

    def release(self, seq: Sequence) -> None:
        """A finished sequence leaves the runner's tables."""
        self.builder.release(seq)

    def run(self, plan: StepPlan, stop: Callable[[], bool] | None = None) -> dict[int, list[int]]:
        """One forward for the whole plan -> {id(seq): new tokens} for sampling sequences.
        `stop` (alone, eager steps): asked between layers; when it says so the step is given
        up (`ForwardStopped`) and no sequence advances."""
        return self.collect(self.launch(plan, stop))

    @torch.inference_mode()
    def launch(self, plan: StepPlan, stop: Callable[[], bool] | None = None) -> Launched:
        """Queue the step's forward and sampling and start reading its tokens back; advance
        every item without a draft (a draft's progress depends on what is accepted)."""
        for seq in plan.preempted:
            self.builder.release(seq)
        batch = self.executor.batch_for(len(plan.items)) if is_plain_decode(plan) else 0
        step = self.builder.build(plan, pad_to=batch, pending=self._rows)
        draws = self._draws(plan, step)
        wants = [(item, rows) for item, rows in zip(plan.items, step.item_rows)
                 if rows[1] and item.seq.params.logprobs is not None]
        # Log-probabilities need whole rows: under tensor parallelism every rank gathers them.
        step.gather = self.record is not None or bool(wants)
        if self.group is not None:
            step.draws = [(row, params, gen.get_state()) for row, params, gen in draws]
            self.group.send_step(step)  # the one message per step to the other ranks
        # Another rank runs every step to its end: a step it was sent is never given up.
        tokens, logits = self.executor.run(step, draws, stop if self.group is None else None)  # [R] on the device
        if self.record is not None:
            self.record(plan, step, logits)
        logprobs = {id(item.seq): _logprobs(logits, tokens, first, count, item.seq.params.logprobs)
                    for item, (first, count) in wants}
        self._rows = {
            id(item.seq): first + count - 1 for item, (first, count) in zip(plan.items, step.item_rows) if count
        }
        for item in plan.items:
            if not item.draft:
                self._advance(item, 0)
        if tokens.device.type == "cuda":
            host = torch.empty(tokens.shape, dtype=tokens.dtype, pin_memory=True)
            host.copy_(tokens, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
            return Launched(plan, step, host, ready, logprobs)
        return Launched(plan, step, tokens, None, logprobs)

    def collect(self, launched: Launched) -> dict[int, list[int]]:
        """Wait for a launched step's tokens (the step's one host sync) -> {id(seq): new
        tokens} for its sampling sequences, drafts verified."""
        rows = launched.tokens()
        produced: dict[int, list[int]] = {}
        for item, (first, count) in zip(launched.plan.items, launched.step.item_rows):
            new = self._tokens(item, rows[first : first + count]) if count else []
            if id(item.seq) in launched.logprobs:
                item.seq.fresh_logprobs = _rows_logprobs(launched.logprobs[id(item.seq)], item, len(new))
            if item.draft:
                self._advance(item, len(new))
            if count:  # it sampled (`item.samples` now counts the tokens it made pending)
                produced[id(item.seq)] = new
        return produced

    def _draws(self, plan: StepPlan, step: HostStep) -> list[tuple[int, SamplingParams, torch.Generator | None]]:
        """(logits row, parameters, generator) of every row a sampler draws: the last row of
        each sampling sequence with a temperature. A seeded request draws from its own
        generator; under tensor parallelism every drawn request has one (the other ranks
        copy its state), seeded at random when the request has no seed."""
        draws = []
        for item, (first, count) in zip(plan.items, step.item_rows):
            seq = item.seq
            if not count or seq.is_greedy:
                continue
            if seq.generator is None and (seq.params.seed is not None or self.group is not None):
                seed = seq.params.seed if seq.params.seed is not None else secrets.randbits(63)
                seq.generator = torch.Generator(device=self.device).manual_seed(seed)
            draws.append((first + count - 1, seq.params, seq.generator))
        return draws

    def _tokens(self, item: ScheduledSeq, targets: list[int]) -> list[int]:
        seq = item.seq
        if item.draft:
            out = accept_greedy(item.draft, targets)
            seq.metrics.accepted_draft_tokens += len(out) - 1
            update_draft_limit(seq, len(item.draft), len(out) - 1, self.draft_ceiling)
            return out
        return [targets[-1]]

    def _advance(self, item: ScheduledSeq, num_new: int) -> None:
        """Record how far the sequence's K/V really got: a draft's rejected tokens do not
        count (their K/V are overwritten later; blocks are published up to here only);
        num_new matters for drafts only."""
        seq = item.seq
        end = item.start + num_new if item.draft else item.start + item.num_tokens
        seq.num_computed = max(seq.num_computed, end)


def _logprobs(logits: torch.Tensor, tokens: torch.Tensor, first: int, count: int, top: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows [first, first + count) of a step: the log-probability of each row's token (its
    sampled or verified one), and the `top` most likely (values, ids), on the device."""
    logp = logits[first : first + count].float().log_softmax(-1)  # [count, vocab]
    chosen = logp.gather(1, tokens[first : first + count, None].to(logp.device))[:, 0]
    values, ids = logp.topk(top, dim=-1) if top else (logp[:, :0], logp[:, :0].long())
    return chosen, values, ids


def _rows_logprobs(found: tuple[torch.Tensor, torch.Tensor, torch.Tensor], item: ScheduledSeq, new: int
                   ) -> list[tuple[float, list[tuple[int, float]]]]:
    """Per new token, (its log-probability, the step's top (id, log-probability) pairs). A
    plain step's token is its last row's; a draft's accepted tokens are its rows' in order
    (greedy verification accepts exactly the argmax of each row: spec.accept_greedy)."""
    chosen, values, ids = (t.tolist() for t in found)
    rows = range(new) if item.draft else range(len(chosen) - 1, len(chosen))
    return [(chosen[r], list(zip(ids[r], values[r]))) for r in rows]
