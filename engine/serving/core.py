"""Engine core: the synchronous step loop (schedule -> run -> append, stop, publish blocks).

`AsyncEngine` (async_engine.py) drives one of these from a worker thread; tests and
benchmarks may drive it directly. Not thread-safe: one thread owns it.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass

from .block_tables import BlockTables
from .blocks import BlockPool
from .runner import ModelRunner
from ..model.sampler import SamplingParams
from .scheduler import AdmissionError, Scheduler, SchedulerConfig, StepPlan
from .sequence import Priority, Sequence
from .spec import PromptLookup

log = logging.getLogger("loopls.engine")


@dataclass
class StepEvent:
    """What one step did for one request: tokens appended, and whether it is over."""

    seq: Sequence
    new_tokens: list[int]
    finished: bool


def check_prompt_ids(prompt_ids: list[int], vocab: int) -> None:
    """Raise AdmissionError unless every prompt token is an id of the vocabulary."""
    bad = None
    # Plain ints (the usual case) are checked by min/max; a 32K-token prompt costs
    # milliseconds that way and tens of them with a per-token isinstance check.
    if not all(type(t) is int for t in prompt_ids) or (prompt_ids and not 0 <= min(prompt_ids) <= max(prompt_ids) < vocab):
        bad = next((t for t in prompt_ids if not isinstance(t, numbers.Integral) or not 0 <= t < vocab), None)
    if bad is not None:
        raise AdmissionError(f"prompt token {bad!r} is not an id of this model's vocabulary (0..{vocab - 1})")


class EngineCore:
    def __init__(
        self,
        model,
        config: SchedulerConfig | None = None,
        eos_ids: tuple[int, ...] = (),
        decode: Callable[[list[int]], str] | None = None,
        group=None,
    ) -> None:
        self.config = config or SchedulerConfig()
        self.model_config = model.config
        self.pool = BlockPool(self.config.num_blocks, self.config.block_size)
        # group (workers.RankGroup): on tensor-parallel rank 0, the other ranks that run every step
        self.runner = ModelRunner(model, self.config, eos_ids, group)
        self.tables = BlockTables(self.pool, self.runner.window_loops, model.config.loop_window_size)
        propose = PromptLookup() if self.config.num_speculative_tokens else None
        self.scheduler = Scheduler(self.config, self.tables, model.config.max_position_embeddings, propose)
        self.eos_ids = frozenset(eos_ids)
        self.decode = decode  # token ids -> text, needed only for string stops
        self.requests: dict[str, Sequence] = {}
        self.steps = 0
        self.failed_steps = 0

    # -- requests ------------------------------------------------------------------------
    def check(self, prompt_ids: list[int], params: SamplingParams) -> None:
        """Raise AdmissionError if the request can never be served. Reads only constants,
        so any thread may call it."""
        check_prompt_ids(prompt_ids, self.model_config.vocab_size)
        self.scheduler.check_admissible(len(prompt_ids), params.max_tokens)

    def add(
        self,
        request_id: str,
        prompt_ids: list[int],
        params: SamplingParams,
        priority: Priority = Priority.INLINE,
        speculate: bool = True,
    ) -> Sequence:
        if request_id in self.requests:
            raise AdmissionError(f"request id {request_id!r} is already live")
        self.check(prompt_ids, params)
        seq = Sequence(request_id, [int(t) for t in prompt_ids], params, Priority(priority), speculate)
        self.scheduler.add(seq)
        self.requests[request_id] = seq
        return seq

    def abort(self, request_id: str) -> Sequence | None:
        """Cancel a live request; its blocks are released at once."""
        seq = self.requests.pop(request_id, None)
        if seq is not None:
            self._finish(seq, "cancelled")
        return seq

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    # -- one step ------------------------------------------------------------------------
    def step(self) -> list[StepEvent]:
        plan = self.scheduler.schedule()
        if plan.empty:
            return []
        self.steps += 1
        now = time.perf_counter()
        for item in plan.items:
            if item.seq.metrics.first_scheduled is None:
                item.seq.metrics.first_scheduled = now
        try:
            produced = self.runner.run(plan)
        except Exception as exc:  # noqa: BLE001 - engine boundary: any failure of a step
            # (OOM, a kernel error, a bug) fails the requests in it; the engine goes on,
            # unless other tensor-parallel ranks are left mid-step (the caller restarts them).
            if not self.runner.recoverable:
                raise
            return self._fail(plan, exc)
        events = []
        for item in plan.items:
            seq = item.seq
            new, reason = self._append(seq, produced[id(seq)]) if id(seq) in produced else ([], None)
            # Publish after appending (accepted draft tokens become known tokens) and before
            # finishing, so that a finished request's blocks stay cached for the next one;
            # then release the window blocks no future query of it can see.
            self.tables.publish(seq)
            self.tables.trim(seq)
            if reason:
                self.requests.pop(seq.request_id, None)
                self._finish(seq, reason)
            if id(seq) in produced:
                events.append(StepEvent(seq, new, reason is not None))
        return events

    def _append(self, seq: Sequence, tokens: list[int]) -> tuple[list[int], str | None]:
        """Append sampled tokens up to the first stop; returns (appended, finish reason)."""
        now = time.perf_counter()
        m, p = seq.metrics, seq.params
        m.prefill_done = m.prefill_done or now
        stop_ids = self.eos_ids | set(p.stop_token_ids)
        new: list[int] = []
        reason = None
        for tok in tokens:
            if tok in stop_ids and len(seq.output_ids) >= p.min_tokens:
                reason = "stop"
                break
            seq.output_ids.append(tok)
            new.append(tok)
            m.first_token = m.first_token or now
            reason = self._end_reason(seq)
            if reason:
                break
        return new, reason

    def _end_reason(self, seq: Sequence) -> str | None:
        """After appending a token: "stop" for a stop string, "length" at a limit."""
        p = seq.params
        if p.stop and self.decode is not None:
            text = self.decode(seq.output_ids)
            if any(s in text for s in p.stop if s):
                return "stop"
        if len(seq.output_ids) >= p.max_tokens or seq.num_tokens >= self.scheduler.max_model_len:
            return "length"
        return None

    def _fail(self, plan: StepPlan, exc: Exception) -> list[StepEvent]:
        self.failed_steps += 1
        log.error("engine step failed for %d request(s): %s", len(plan.items), exc, exc_info=exc)
        events = []
        for item in plan.items:
            seq = item.seq
            self.requests.pop(seq.request_id, None)
            seq.error = f"{type(exc).__name__}: {exc}"
            self._finish(seq, "error")
            events.append(StepEvent(seq, [], True))
        return events

    def fail_all(self, exc: Exception) -> list[Sequence]:
        """Fail every live request (used when the step loop itself broke)."""
        failed = list(self.requests.values())
        for seq in failed:
            seq.error = f"{type(exc).__name__}: {exc}"
            self._finish(seq, "error")
        self.requests.clear()
        return failed

    def _finish(self, seq: Sequence, reason: str) -> None:
        self.scheduler.remove(seq)
        self.runner.release(seq)
        seq.finish_reason = reason
        seq.metrics.finished = time.perf_counter()
        log.debug("request %s finished (%s): %s", seq.request_id, reason, seq.metrics.as_dict())

    # -- observability -------------------------------------------------------------------
    @property
    def block_bytes(self) -> int:
        return self.runner.kv.nbytes() // self.pool.num_blocks

    def stats(self) -> dict[str, int]:
        sched = self.scheduler
        return {
            "blocks_total": self.pool.num_blocks,
            "blocks_used": self.pool.num_used,
            "blocks_free": self.pool.num_free,
            "blocks_cached": self.pool.num_cached,
            "block_size": self.pool.block_size,
            "cache_hit_blocks": self.pool.hits,
            "evictions": self.pool.evictions,
            "waiting": len(sched.waiting),
            "running": len(sched.running),
            "kv_pool_bytes": self.runner.kv.nbytes(),
            "loop_window_bytes": sum(self.tables.window_blocks(s) for s in sched.running) * self.block_bytes,
            "steps": self.steps,
            "failed_steps": self.failed_steps,
        }
