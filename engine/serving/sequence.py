"""One request as the engine sees it: tokens, progress, blocks, timings."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import torch

from .blocks import ROOT_HASH
from ..model.sampling_params import SamplingParams
from .priority import Priority


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass
class Metrics:
    """Per-request observability; times are time.perf_counter() seconds."""

    arrival: float = field(default_factory=time.perf_counter)
    first_scheduled: float | None = None
    prefill_done: float | None = None
    first_token: float | None = None
    finished: float | None = None
    cached_tokens: int = 0  # prompt tokens whose K/V came from the prefix cache
    preemptions: int = 0
    draft_tokens: int = 0
    accepted_draft_tokens: int = 0
    peak_blocks: int = 0

    def as_dict(self) -> dict[str, float | int | None]:
        """Durations in seconds (None when the phase did not happen) and counters."""
        def span(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else b - a

        return {
            "queue_s": span(self.arrival, self.first_scheduled),
            "prefill_s": span(self.first_scheduled, self.prefill_done),
            "time_to_first_token_s": span(self.arrival, self.first_token),
            "decode_s": span(self.first_token, self.finished),
            "total_s": span(self.arrival, self.finished),
            "cached_tokens": self.cached_tokens,
            "preemptions": self.preemptions,
            "draft_tokens": self.draft_tokens,
            "accepted_draft_tokens": self.accepted_draft_tokens,
            "peak_blocks": self.peak_blocks,
        }


# The first prompt-lookup draft limit of a sequence, and the shortest it shrinks to
# (spec.update_draft_limit). On a CPU a step verifying 1, 2 or 3 draft tokens costs about the
# same (+3-4.5 ms over a 14.5 ms plain step of the default model), a 4th token about 3 ms more:
# the int8 products (engine/model/int8.py) work on blocks of 4 rows, and a 5th row starts a
# new block. A draft shorter than 3 saves nothing when it is rejected and loses the tokens it
# would have kept when it is not (docs/benchmarks.md, issue 10).
MIN_DRAFT = 3


@dataclass(eq=False)  # identity semantics: two requests are never "equal"
class Sequence:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    priority: Priority = Priority.INLINE
    speculate: bool = True
    arrival_index: int = 0
    status: Status = Status.WAITING
    output_ids: list[int] = field(default_factory=list)
    block_table: list[int] = field(default_factory=list)
    # Loop models: one block table per later loop for its sliding-window K/V; entries before
    # window_start are -1 (released: no future query sees them). See block_tables.py.
    window_tables: list[list[int]] = field(default_factory=list)
    window_start: int = 0
    # Positions whose K/V are in the blocks, and the chained hash of the last registered
    # block (how many blocks of block_table are published in the prefix cache).
    num_computed: int = 0
    num_registered: int = 0
    last_hash: bytes = ROOT_HASH
    generator: torch.Generator | None = None
    draft_limit: int = MIN_DRAFT  # adaptive prompt-lookup draft length (spec.update_draft_limit)
    # Async scheduling (core.py): tokens sampled by steps still in flight, not yet read back.
    # They count as tokens (the next step is planned with them) but read as -1 until known.
    pending: int = 0
    finish_reason: str | None = None  # "stop" | "length" | "cancelled" | "error"
    error: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    # params.logprobs set: per output token its log-probability and the step's most likely
    # (id, log-probability) pairs; `fresh_logprobs` holds those of the step just read back,
    # one per token it produced, for the engine core to append with the tokens it keeps.
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    fresh_logprobs: list[tuple[float, list[tuple[int, float]]]] = field(default_factory=list)

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    @property
    def num_tokens(self) -> int:
        """Tokens the next step plans with: prompt, output and pending ones."""
        return len(self.prompt_ids) + len(self.output_ids) + self.pending

    @property
    def num_known(self) -> int:
        """Tokens whose ids the host knows (prompt and output)."""
        return len(self.prompt_ids) + len(self.output_ids)

    def ids(self, start: int, end: int) -> list[int]:
        """Tokens [start, end) of prompt + output, without copying the whole sequence (a
        step reads a few tokens of sequences that may be 100K tokens long). A pending token
        reads -1: the step that feeds it takes it from the device (batch.py)."""
        known = self.num_known
        if end > known:
            return (self.ids(start, known) if start < known else []) + [-1] * (end - max(start, known))
        n = len(self.prompt_ids)
        if end <= n:
            return self.prompt_ids[start:end]
        if start >= n:
            return self.output_ids[start - n : end - n]
        return self.prompt_ids[start:] + self.output_ids[: end - n]

    @property
    def prefill_only(self) -> bool:
        """A request of max_tokens 0: it fills the prefix cache with its prompt and ends."""
        return self.params.max_tokens == 0

    @property
    def in_prefill(self) -> bool:
        """True until every known token but the last has its K/V (the last one is fed to
        the model to produce the next token); a prefill-only request needs every token's."""
        return self.num_computed < self.num_tokens - (0 if self.prefill_only else 1)

    @property
    def is_greedy(self) -> bool:
        return self.params.temperature == 0

    @property
    def remaining_tokens(self) -> int:
        return self.params.max_tokens - len(self.output_ids) - self.pending

    def sort_key(self) -> tuple[int, int]:
        return (int(self.priority), self.arrival_index)

    def reset_for_recompute(self) -> None:
        """Preempted: forget all K/V; prompt and output so far are recomputed later."""
        self.status = Status.WAITING
        self.block_table = []
        self.window_tables = []
        self.window_start = 0
        self.num_computed = 0
        self.num_registered = 0
        self.last_hash = ROOT_HASH
        self.metrics.preemptions += 1
