"""Engine core: the step loop (schedule -> run -> append, stop, publish blocks).

`AsyncEngine` (async_engine.py) drives one of these from a worker thread; tests and
benchmarks may drive it directly. Not thread-safe: one thread owns it.

Async scheduling (`SchedulerConfig.async_scheduling`, on by default on CUDA): a step plans
and launches step N+1 while step N still runs on the device, assuming every sequence
sampling in step N gets one token (`Sequence.pending`; the device feeds it to step N+1),
and only then reads step N's tokens back and processes them: stop rules, streaming,
finished sequences, blocks. The host's work thus hides behind the device's instead of
leaving it idle between steps. A sequence that stopped at step N was already queued in
step N+1, whose token is discarded; a sequence whose pending token is its last (its
`max_tokens`) is not queued again. Steps that may carry speculative drafts run
synchronously (a draft is proposed from the known tokens and its accepted length decides
the next step), as does everything on a CPU unless asked for.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..model.transformer import ForwardStopped
from .block_tables import BlockTables
from .blocks import BlockPool
from .runner import Launched, ModelRunner
from ..model.sampling_params import SamplingParams
from .scheduler import AdmissionError, ScheduledSeq, Scheduler, SchedulerConfig, StepPlan
from .priority import Priority
from .sequence import Sequence
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
        self.stopped_steps = 0  # warm-up steps given up for a command that came meanwhile (`step`)
        self.async_scheduling = (
            self.config.async_scheduling if self.config.async_scheduling is not None
            else self.runner.device.type == "cuda"
        )
        self._inflight: Launched | None = None  # the launched step not yet read back

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
            # Blocks a step still in flight completes count too (async scheduling): whoever
            # reads them later runs after that step on the device.
            self.tables.publish(seq)
            self._finish(seq, "cancelled")
        return seq

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work or self._inflight is not None

    # -- one step ------------------------------------------------------------------------
    def step(self, interrupt: Callable[[], bool] | None = None) -> list[StepEvent]:
        """One step; returns what it did for each request. Under async scheduling the events
        are those of the step launched by the previous call.

        `interrupt` (synchronous steps): a step of prefill-only requests alone (warm-ups)
        asks it between the model's layers and, when it says so, is given up: nothing
        advances, no event, and its chunk is computed again by a later step. A warm-up chunk
        on a CPU runs for a hundred milliseconds or more: a generation that arrives meanwhile
        need not wait for its end."""
        if self.async_scheduling or self._inflight is not None:
            return self._step_async()
        plan = self.scheduler.schedule()
        if plan.empty:
            return []
        self.steps += 1
        now = time.perf_counter()
        for item in plan.items:
            if item.seq.metrics.first_scheduled is None:
                item.seq.metrics.first_scheduled = now
        stop = interrupt if interrupt is not None and all(item.seq.prefill_only for item in plan.items) else None
        try:
            produced = self.runner.run(plan) if stop is None else self.runner.run(plan, stop)
        except ForwardStopped:
            # It wrote K/V only into slots the whole step writes, in blocks its sequence
            # alone holds and not yet published: the chunk, planned again from the same
            # position, writes them again.
            self.stopped_steps += 1
            return []
        except Exception as exc:  # noqa: BLE001 - engine boundary: any failure of a step
            # (OOM, a kernel error, a bug) fails the requests in it; the engine goes on,
            # unless other tensor-parallel ranks are left mid-step (the caller restarts them).
            if not self.runner.recoverable:
                raise
            return self._fail(plan.items, exc)
        return self._apply(plan, produced)

    def _apply(self, plan: StepPlan, produced: dict[int, list[int]]) -> list[StepEvent]:
        events = []
        for item in plan.items:
            seq = item.seq
            if seq.finish_reason is not None:
                continue  # cancelled (or failed) while its step was in flight: its tokens are dropped
            new, reason = self._append(seq, produced[id(seq)]) if id(seq) in produced else ([], None)
            prefilled = seq.prefill_only and not seq.in_prefill
            if prefilled:
                reason = "length"  # its max_tokens, 0, reached: the prompt is in the cache
                seq.metrics.prefill_done = time.perf_counter()
            # Publish after appending (accepted draft tokens become known tokens) and before
            # finishing, so that a finished request's blocks stay cached for the next one;
            # then release the window blocks no future query of it can see.
            self.tables.publish(seq)
            self.tables.trim(seq)
            if reason:
                self.requests.pop(seq.request_id, None)
                self._finish(seq, reason)
            if id(seq) in produced or prefilled:
                events.append(StepEvent(seq, new, reason is not None))
        return events

    # -- async scheduling ----------------------------------------------------------------
    def _step_async(self) -> list[StepEvent]:
        """Launch the next step, then read back and process the one launched before it."""
        events: list[StepEvent] = []
        if self._inflight is not None and (not self.async_scheduling or self._drafting()):
            events = self.settle()  # the next step is planned on known tokens only
        plan = self.scheduler.schedule()
        if plan.empty:
            return events + self.settle()
        self.steps += 1
        now = time.perf_counter()
        for item in plan.items:
            if item.seq.metrics.first_scheduled is None:
                item.seq.metrics.first_scheduled = now
        overlap = self.async_scheduling and not any(item.draft for item in plan.items)
        try:
            launched = self.runner.launch(plan)
        except Exception as exc:  # noqa: BLE001 - engine boundary, as in step()
            if not self.runner.recoverable:
                raise
            return events + self._fail(plan.items, exc) + self.settle()
        for item in plan.items:
            if item.samples and not item.draft:
                item.seq.pending += 1
        previous, self._inflight = self._inflight, launched
        if previous is not None:
            events += self._collect(previous)
        if not overlap:
            events += self.settle()  # a draft's accepted length decides the next step
        return events

    def settle(self) -> list[StepEvent]:
        """Read back and process the step in flight, if any (async scheduling)."""
        launched, self._inflight = self._inflight, None
        return self._collect(launched) if launched is not None else []

    def _drafting(self) -> bool:
        """Whether a running sequence may get a speculative draft in the next step."""
        return any(self.scheduler.wants_draft(seq) for seq in self.scheduler.running)

    def _collect(self, launched: Launched) -> list[StepEvent]:
        try:
            produced = self.runner.collect(launched)
        except Exception as exc:  # noqa: BLE001 - a device error surfaces at the read-back
            if not self.runner.recoverable:
                raise
            # The step launched after it ran on a broken device too: both fail.
            later, self._inflight = self._inflight, None
            items = launched.plan.items + (later.plan.items if later is not None else [])
            return self._fail(items, exc)
        for item in launched.plan.items:
            if id(item.seq) in produced and not item.draft and item.seq.pending:
                item.seq.pending -= 1
        return self._apply(launched.plan, produced)

    def _append(self, seq: Sequence, tokens: list[int]) -> tuple[list[int], str | None]:
        """Append sampled tokens up to the first stop; returns (appended, finish reason)."""
        now = time.perf_counter()
        m, p = seq.metrics, seq.params
        m.prefill_done = m.prefill_done or now
        stop_ids = self.eos_ids | set(p.stop_token_ids)
        new: list[int] = []
        reason = None
        fresh, seq.fresh_logprobs = seq.fresh_logprobs, []
        for j, tok in enumerate(tokens):
            if tok in stop_ids and len(seq.output_ids) >= p.min_tokens:
                reason = "stop"
                break
            seq.output_ids.append(tok)
            new.append(tok)
            if j < len(fresh):  # the request asked for log-probabilities (params.logprobs)
                seq.logprobs.append(fresh[j][0])
                seq.top_logprobs.append(fresh[j][1])
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
        if len(seq.output_ids) >= p.max_tokens or seq.num_known >= self.scheduler.max_model_len:
            return "length"
        return None

    def _fail(self, items: list[ScheduledSeq], exc: Exception) -> list[StepEvent]:
        self.failed_steps += 1
        log.error("engine step failed for %d request(s): %s", len(items), exc, exc_info=exc)
        events = []
        for seq in {id(item.seq): item.seq for item in items}.values():
            if seq.finish_reason is not None:
                continue  # already ended (cancelled while in flight)
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
        self._inflight = None
        return failed

    def _finish(self, seq: Sequence, reason: str) -> None:
        self.scheduler.remove(seq)
        self.runner.release(seq)
        seq.pending = 0  # tokens of steps still in flight are dropped
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
            "stopped_steps": self.stopped_steps,
        }
