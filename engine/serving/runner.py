"""Model runner: turns a scheduler `StepPlan` into one packed forward and the sampled tokens.

It owns the step builder and a `StepExecutor` (executor.py: the K/V tensors, loop-0 and Loop
window blocks alike, and on CUDA the decode graphs); it never decides who runs. A plain
decode step (one token per sequence) replays a captured CUDA graph padded to the next
captured batch size; any other step (prefill chunks, drafts, a CPU) runs eagerly. Sampling
runs on the device for the whole batch and the step ends with one host sync, which reads
every token at once. After a step it advances every sequence's progress (`num_computed`) and
returns the tokens each sampling sequence produced; appending them, stop rules and block
registration are the engine core's job.

Tensor parallelism (`group`, workers.py): this runner lives on rank 0. Each step it sends the
built step to the other ranks once, before running its own share; every rank's executor holds
its heads' K/V under the same block ids, and only rank 0 computes logits and samples. A
failed step then leaves the ranks out of step with each other, so it is not recoverable here:
the engine core re-raises it and the worker group is restarted.

Async scheduling (core.py) splits `run` in two: `launch` queues the forward and the sampling
and starts copying the tokens back (pinned memory, an event), returning at once; `collect`
waits for that copy. A step launched before the previous one was collected feeds the
previous step's tokens from the device (`HostStep.feed`), shared with the other ranks by a
broadcast after the step (`HostStep.share`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.attention import PagedKV
from ..model.config import ModelConfig
from ..model.sampler import keep_only, sample_rows
from .batch import HostStep, StepBuilder, is_plain_decode, upload
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
            config.block_size, self.window_loops, self.config.max_position_embeddings, journal=group is not None
        )
        kinds, width = self.builder.kinds, self.builder.width
        if group is None:
            self.executor = StepExecutor(model, config, kinds, width)
        else:
            self.executor = group.build_executor(config, kinds, width)
        self.stop_ids = tuple(stop_ids)
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

    def run(self, plan: StepPlan) -> dict[int, list[int]]:
        """One forward for the whole plan -> {id(seq): new tokens} for sampling sequences."""
        return self.collect(self.launch(plan))

    @torch.inference_mode()
    def launch(self, plan: StepPlan, share: bool = False) -> Launched:
        """Queue the step's forward and sampling and start reading its tokens back; advance
        every item without a draft (a draft's progress depends on what is accepted).
        share: other ranks keep the sampled tokens, so the next step can feed them."""
        for seq in plan.preempted:
            self.builder.release(seq)
        step, logits = self._forward(plan, share)
        tokens = self._sample(plan, step, logits)  # [R] on the device
        self.executor.share(tokens, step.num_logits, step.share)
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
            return Launched(plan, step, host, ready)
        return Launched(plan, step, tokens, None)

    def collect(self, launched: Launched) -> dict[int, list[int]]:
        """Wait for a launched step's tokens (the step's one host sync) -> {id(seq): new
        tokens} for its sampling sequences, drafts verified."""
        rows = launched.tokens()
        produced: dict[int, list[int]] = {}
        for item, (first, count) in zip(launched.plan.items, launched.step.item_rows):
            new = self._tokens(item, rows[first : first + count]) if count else []
            if item.draft:
                self._advance(item, len(new))
            if count:  # it sampled (`item.samples` now counts the tokens it made pending)
                produced[id(item.seq)] = new
        return produced

    def _forward(self, plan: StepPlan, share: bool = False) -> tuple[HostStep, torch.Tensor]:
        batch = self.executor.batch_for(len(plan.items)) if is_plain_decode(plan) else 0
        step = self.builder.build(plan, pad_to=batch, pending=self._rows)
        step.share = share and self.group is not None and step.num_logits > 0
        if self.group is not None:
            self.group.send_step(step)  # the one message per step to the other ranks
        return step, self.executor.forward(step)

    def _sample(self, plan: StepPlan, step: HostStep, logits: torch.Tensor) -> torch.Tensor:
        """Token of every logits row (argmax, or a draw for the last row of a sampled
        sequence), for the whole batch on the device, without a host sync."""
        self._mask_stops(plan, step, logits)
        self._mask_first(plan, step, logits)
        tokens = logits.argmax(dim=-1)
        drawn = [
            (first + count - 1, item.seq)
            for item, (first, count) in zip(plan.items, step.item_rows)
            if count and not item.seq.is_greedy
        ]
        if drawn:
            for _, seq in drawn:
                if seq.generator is None and seq.params.seed is not None:
                    seq.generator = torch.Generator(device=self.device).manual_seed(seq.params.seed)
            at = upload(np.asarray([r for r, _ in drawn], dtype=np.int64), self.device)
            tokens[at] = sample_rows(logits[at], [s.params for _, s in drawn], [s.generator for _, s in drawn])
        return tokens

    def _mask_stops(self, plan: StepPlan, step: HostStep, logits: torch.Tensor) -> None:
        """Suppress stop tokens at rows whose output length is still below min_tokens."""
        rows: list[int] = []
        cols: list[int] = []
        for item, (first, count) in zip(plan.items, step.item_rows):
            seq = item.seq
            short = min(seq.params.min_tokens - len(seq.output_ids), count)
            if short <= 0:
                continue
            stops = sorted(set(self.stop_ids) | set(seq.params.stop_token_ids))
            for r in range(first, first + short):
                rows.extend([r] * len(stops))
                cols.extend(stops)
        if rows:
            index = upload(np.asarray([rows, cols], dtype=np.int64), self.device)
            logits[index[0], index[1]] = float("-inf")

    def _mask_first(self, plan: StepPlan, step: HostStep, logits: torch.Tensor) -> None:
        """At the row that yields a sequence's first token, only its `allowed_first` ids."""
        for item, (first, count) in zip(plan.items, step.item_rows):
            seq = item.seq
            if count and seq.params.allowed_first and not seq.output_ids:
                keep_only(logits[first], seq.params.allowed_first)

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
