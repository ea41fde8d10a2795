"""Continuous-batching scheduler: which sequences run in the next step, with how many tokens.

Policy, in this order every step:
1. Decode first: every running sequence that has all but its last token computed gets one
   token (plus its speculative draft, if any), highest priority first.
2. Chunked prefill: running sequences still prefilling get a chunk each from what is left of
   the per-step token budget.
3. Admission: waiting sequences, ordered by (priority, arrival), join while the budget, the
   sequence limit and the free blocks allow. A new sequence first takes every block of its
   prompt that the prefix cache holds.
A prefill-only request (max_tokens 0: a prefix-cache warm-up) gets no tokens in a step while
a request of higher priority runs or waits: it never makes a generation wait behind its
prefill, nor slows the generation's decode steps with its chunks. It keeps its blocks and
goes on when the generation is done (what it computed so far is already in the prefix
cache, for whoever shares its start). A generation that arrives while such a chunk runs
still waits for that step, so its chunks may be capped (`prefill_only_chunk`). Prefill-only
requests run one at a time, in the order they came (the language server warms a line's
short prompt before its full one: the short one must be ready first), unless one of a
better priority arrives: it joins at once and the other gets no tokens until it is done
(a keystroke's warm-up of its line, a few tokens, does not wait for a new line's
background warm-up of a thousand).
Blocks are counted loop-0 and Loop window blocks together (block_tables.py).
When blocks run out, the lowest-ranked running sequence not yet in this step is preempted:
its blocks are released (their cached prefix usually survives in the LRU) and it goes back to
waiting to be recomputed. An arriving request only preempts sequences of strictly lower
priority, so equal-priority requests never thrash. A request that could not fit even in an
empty cache is refused at submission (`AdmissionError`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .block_tables import BlockTables
from .sequence import Sequence, Status


class AdmissionError(ValueError):
    """A request the engine can never serve (too long for the cache or the model)."""


@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    num_blocks: int = 256
    block_size: int = 16
    max_num_seqs: int = 16
    max_step_tokens: int = 256  # per-step token budget shared by decodes and prefill chunks
    # A prefill-only request's chunk, at most (None: the step budget). A generation that
    # arrives while a warm-up's chunk runs waits for that step: on a 2-core CPU a 256-token
    # chunk of the default model took 200-350 ms, 128 tokens half of it for 8% more CPU in all.
    prefill_only_chunk: int | None = None
    num_speculative_tokens: int = 8  # most prompt-lookup draft tokens for greedy requests; 0 = off
    enable_prefix_caching: bool = True  # off only to measure cold prefill
    cuda_graphs: bool = True  # capture the decode step on CUDA (graphs.py); ignored on CPU
    # bf16/fp16 on CUDA: time cuBLAS against the Triton skinny GEMM for each decode-size
    # product and run the faster (kernels/decode_gemm.py); False: cuBLAS only.
    decode_gemm: bool = True
    # Plan and launch step N+1 while step N runs, reading its tokens back one step late
    # (core.py). None: on where the model runs on CUDA (on a CPU nothing runs concurrently).
    async_scheduling: bool | None = None

    def __post_init__(self) -> None:
        chunk = 1 if self.prefill_only_chunk is None else self.prefill_only_chunk
        if min(self.num_blocks, self.block_size, self.max_num_seqs, self.max_step_tokens, chunk) < 1:
            raise ValueError("num_blocks, block_size, max_num_seqs, max_step_tokens and prefill_only_chunk "
                             "must be >= 1")
        if self.num_speculative_tokens < 0:
            raise ValueError("num_speculative_tokens must be >= 0")

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size


@dataclass(frozen=True)
class Admission:
    """Whether a request can ever be served: it must fit the whole cache alone and the model's
    positions. Reads only constants, so any thread (or process) holding them may check."""

    config: SchedulerConfig
    loops: int  # later Loop loops keeping window blocks (0: not a Loop model)
    keep: int  # keys before its own position that a later loop's query still sees (W - 1)
    max_model_len: int

    def check(self, prompt_len: int, max_tokens: int) -> None:
        need = prompt_len + max_tokens
        if prompt_len < 1:
            raise AdmissionError("empty prompt: at least one token is needed")
        blocks = self.blocks_alone(need)
        if blocks > self.config.num_blocks:
            window = " and its Loop window" if self.loops else ""
            raise AdmissionError(
                f"request needs {blocks} KV blocks for {need} tokens (prompt {prompt_len} + max_tokens "
                f"{max_tokens}){window} but the whole cache holds {self.config.capacity_tokens} "
                f"({self.config.num_blocks} blocks of {self.config.block_size}); shorten the prompt "
                "or lower max_tokens"
            )
        if need > self.max_model_len:
            raise AdmissionError(
                f"request needs {need} positions (prompt {prompt_len} + max_tokens {max_tokens}) but the "
                f"model allows {self.max_model_len}"
            )

    def blocks_alone(self, tokens: int) -> int:
        """Most blocks one sequence of `tokens` tokens can hold at once: its loop-0 blocks plus,
        per later Loop loop, the window of a step's chunk and the W-1 keys before it."""
        bs = self.config.block_size
        window = -(-(min(self.config.max_step_tokens, tokens) + self.keep) // bs) + 1
        return -(-tokens // bs) + self.loops * window


@dataclass
class ScheduledSeq:
    seq: Sequence
    start: int  # first position fed this step
    num_tokens: int  # tokens fed this step (a decode feeds 1 + len(draft))
    draft: list[int] = field(default_factory=list)

    @property
    def samples(self) -> bool:
        """Whether this chunk reaches the sequence's last known token, so it yields tokens
        (a prefill-only request never does: no logits row)."""
        return not self.seq.prefill_only and self.start + self.num_tokens >= self.seq.num_tokens


@dataclass
class StepPlan:
    items: list[ScheduledSeq] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.items


class Scheduler:
    def __init__(
        self,
        config: SchedulerConfig,
        tables: BlockTables,
        max_model_len: int,
        propose: Callable[[Sequence, int], list[int]] | None = None,
    ) -> None:
        self.config = config
        self.tables = tables
        self.pool = tables.pool
        self.max_model_len = max_model_len
        self.propose = propose
        self.admission = Admission(config, tables.loops, tables.keep, max_model_len)
        self.waiting: list[Sequence] = []
        self.running: list[Sequence] = []
        self._arrivals = 0

    # -- requests ------------------------------------------------------------------------
    def check_admissible(self, prompt_len: int, max_tokens: int) -> None:
        self.admission.check(prompt_len, max_tokens)

    def blocks_alone(self, tokens: int) -> int:
        return self.admission.blocks_alone(tokens)

    def add(self, seq: Sequence) -> None:
        self.check_admissible(len(seq.prompt_ids), seq.params.max_tokens)
        seq.arrival_index = self._arrivals
        self._arrivals += 1
        seq.status = Status.WAITING
        self.waiting.append(seq)

    def remove(self, seq: Sequence) -> None:
        """Take a sequence out (finished, cancelled or failed) and release its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self._release(seq)
        seq.status = Status.FINISHED

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    # -- one step ------------------------------------------------------------------------
    def schedule(self) -> StepPlan:
        plan = StepPlan()
        budget = self.config.max_step_tokens
        scheduled: set[int] = set()
        self.running.sort(key=Sequence.sort_key)
        for seq in [s for s in self.running if not s.in_prefill]:
            if seq.status is Status.RUNNING and budget > 0:
                budget -= self._schedule_decode(seq, budget, plan, scheduled)
        first = self._first_generating()
        # One prefill-only request a step: the best priority's, the first of them to come
        # (one that waits to start goes before a worse one that runs).
        warming: int | None = None  # its priority
        arriving = min((s.priority for s in self.waiting if s.prefill_only), default=None)
        for seq in [s for s in self.running if s.in_prefill]:
            if seq.prefill_only and (warming is not None or (arriving is not None and arriving < seq.priority)):
                continue
            if seq.status is Status.RUNNING and budget > 0 and not _yields(seq, first):
                budget -= self._schedule_chunk(seq, budget, plan, scheduled)
            if seq.prefill_only:
                warming = seq.priority
        self._admit(budget, plan, scheduled, first, warming)
        return plan

    def _first_generating(self) -> int | None:
        """The best priority of the requests that generate (running or waiting), if any."""
        live = [s.priority for s in self.running if not s.prefill_only]
        live += [s.priority for s in self.waiting if not s.prefill_only]
        return min(live, default=None)

    def _schedule_decode(self, seq: Sequence, budget: int, plan: StepPlan, scheduled: set[int]) -> int:
        if seq.remaining_tokens <= 0 or seq.num_tokens >= self.max_model_len:
            return 0  # its pending token is its last (async scheduling): it ends when read back
        draft: list[int] = []
        if self.wants_draft(seq):
            room = min(self.config.num_speculative_tokens, seq.remaining_tokens - 1, budget - 1)
            room = min(room, self.max_model_len - seq.num_tokens - 1)
            draft = self.propose(seq, room) if room > 0 else []
            # A draft is a bet: never preempt anyone to make room for it.
            if not self.pool.can_allocate(self.tables.blocks_to_grow(seq, seq.num_computed + 1 + len(draft))):
                draft = []
        if not self._grow(seq, seq.num_computed + 1 + len(draft), plan, scheduled, strict=False):
            return 0
        plan.items.append(ScheduledSeq(seq, seq.num_computed, 1 + len(draft), draft))
        scheduled.add(id(seq))
        seq.metrics.draft_tokens += len(draft)
        return 1 + len(draft)

    def wants_draft(self, seq: Sequence) -> bool:
        """Whether a decode of `seq` may carry a prompt-lookup draft (proposed from its known
        tokens: async scheduling reads every pending token back before such a step)."""
        return self.propose is not None and seq.speculate and seq.is_greedy and seq.remaining_tokens > 1

    def _schedule_chunk(self, seq: Sequence, budget: int, plan: StepPlan, scheduled: set[int]) -> int:
        start = seq.num_computed
        n = min(seq.num_tokens - start, self._chunk_budget(seq, budget))
        if not self._grow(seq, start + n, plan, scheduled, strict=False):
            return 0
        plan.items.append(ScheduledSeq(seq, start, n))
        scheduled.add(id(seq))
        return n

    def _admit(self, budget: int, plan: StepPlan, scheduled: set[int], first: int | None,
               warming: int | None) -> None:
        """`warming`: the priority of the prefill-only request running, if any (only a better
        one's joins)."""
        self.waiting.sort(key=Sequence.sort_key)
        for seq in list(self.waiting):
            if budget <= 0 or len(self.running) >= self.config.max_num_seqs:
                return
            if seq in plan.preempted or _yields(seq, first) or (
                    seq.prefill_only and warming is not None and warming <= seq.priority):
                continue
            self._take_cached_prefix(seq)
            start = seq.num_computed
            n = min(seq.num_tokens - start, self._chunk_budget(seq, budget))
            if not self._grow(seq, start + n, plan, scheduled, strict=True):
                self._release(seq)  # give the cached blocks back; try again next step
                return  # keep priority order: nobody jumps the queue
            self.waiting.remove(seq)
            self.running.append(seq)
            seq.status = Status.RUNNING
            plan.items.append(ScheduledSeq(seq, start, n))
            scheduled.add(id(seq))
            budget -= n
            if seq.prefill_only:
                warming = seq.priority

    def _chunk_budget(self, seq: Sequence, budget: int) -> int:
        cap = self.config.prefill_only_chunk
        return min(budget, cap) if cap is not None and seq.prefill_only else budget

    def _take_cached_prefix(self, seq: Sequence) -> None:
        # The last token is always computed: its logits give the next token.
        usable = seq.num_tokens - 1 if self.config.enable_prefix_caching else 0
        self.tables.take_prefix(seq, usable)
        seq.metrics.cached_tokens = min(seq.num_computed, len(seq.prompt_ids))

    # -- blocks --------------------------------------------------------------------------
    def _grow(self, seq: Sequence, end: int, plan: StepPlan, scheduled: set[int], strict: bool) -> bool:
        """Give `seq` blocks for positions [0, end), preempting lower-ranked sequences.

        strict: only preempt sequences of strictly lower priority (used for arrivals).
        """
        while not self.pool.can_allocate(self.tables.blocks_to_grow(seq, end)):
            victim = self._pick_victim(seq, scheduled, strict)
            if victim is None:
                return False
            self._preempt(victim, plan)
            if victim is seq:
                return False
        self.tables.grow(seq, end)
        seq.metrics.peak_blocks = max(seq.metrics.peak_blocks, len(seq.block_table))
        return True

    def _pick_victim(self, seq: Sequence, scheduled: set[int], strict: bool) -> Sequence | None:
        candidates = [s for s in self.running if id(s) not in scheduled]
        if strict:
            candidates = [s for s in candidates if s.priority > seq.priority]
        elif seq.status is Status.RUNNING and seq not in candidates:
            candidates.append(seq)
        return max(candidates, key=Sequence.sort_key, default=None)

    def _preempt(self, seq: Sequence, plan: StepPlan) -> None:
        self.running.remove(seq)
        self._release(seq)
        seq.reset_for_recompute()
        self.waiting.append(seq)
        plan.preempted.append(seq)

    def _release(self, seq: Sequence) -> None:
        self.tables.release(seq)


def _yields(seq: Sequence, first: int | None) -> bool:
    """Whether `seq` is a prefill-only request that waits for a request of higher priority."""
    return seq.prefill_only and first is not None and first < seq.priority
