"""Model runner: turns a scheduler `StepPlan` into one packed forward and the sampled tokens.

It owns the KV tensors (`KVPool`) and each Loop sequence's window; it never decides who
runs. After a step it advances every sequence's progress (`num_computed`, replay) and returns
the tokens each sampling sequence produced; appending them, stop rules and block
registration are the engine core's job.
"""

from __future__ import annotations

import torch

from ..model.config import ModelConfig
from .paged_attention import KVPool, LoopWindow, SeqChunk, paged_forward
from ..model.sampler import sample
from .scheduler import ScheduledSeq, StepPlan
from .sequence import Sequence
from .spec import accept_greedy, update_draft_limit


class ModelRunner:
    def __init__(
        self, model, num_blocks: int, block_size: int, stop_ids: tuple[int, ...] = (), draft_ceiling: int = 8
    ) -> None:
        self.model = model
        self.config: ModelConfig = model.config
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.kv = KVPool(self.config, num_blocks, block_size, self.dtype, self.device)
        self.stop_ids = tuple(stop_ids)
        self.draft_ceiling = draft_ceiling

    @torch.inference_mode()
    def run(self, plan: StepPlan) -> dict[int, list[int]]:
        """One forward for the whole plan -> {id(seq): new tokens} for sampling sequences."""
        chunks = [self._chunk(item) for item in plan.items]
        logits = paged_forward(self.model, chunks, self.kv)
        produced: dict[int, list[int]] = {}
        for item, rows in zip(plan.items, logits):
            new = self._tokens(item, rows) if item.samples else []
            self._advance(item, len(new))
            if item.samples:
                produced[id(item.seq)] = new
        return produced

    def _chunk(self, item: ScheduledSeq) -> SeqChunk:
        seq = item.seq
        if self.config.is_loop and seq.window is None:
            seq.window = LoopWindow(self.config)
        ids = seq.all_ids[item.start : item.start + item.num_tokens - len(item.draft)] + item.draft
        # Logits only where a token is sampled: the last position, or every draft position.
        logits_from = len(ids) - 1 - len(item.draft) if item.samples else len(ids)
        return SeqChunk(ids, item.start, seq.num_computed, seq.block_table, seq.window, logits_from)

    def _tokens(self, item: ScheduledSeq, rows: torch.Tensor) -> list[int]:
        seq = item.seq
        rows = self._mask_stops(seq, rows)
        if item.draft:
            out = accept_greedy(item.draft, rows)
            seq.metrics.accepted_draft_tokens += len(out) - 1
            update_draft_limit(seq, len(item.draft), len(out) - 1, self.draft_ceiling)
            return out
        if seq.is_greedy:
            return [int(rows[-1].argmax())]
        if seq.generator is None and seq.params.seed is not None:
            seq.generator = torch.Generator(device=self.device).manual_seed(seq.params.seed)
        return [int(sample(rows[-1:], seq.params, seq.generator)[0])]

    def _mask_stops(self, seq: Sequence, rows: torch.Tensor) -> torch.Tensor:
        """Suppress stop tokens at rows whose output length is still below min_tokens."""
        stops = sorted(set(self.stop_ids) | set(seq.params.stop_token_ids))
        short = seq.params.min_tokens - len(seq.output_ids)
        if not stops or short <= 0:
            return rows
        rows = rows.clone()
        rows[:short, stops] = float("-inf")
        return rows

    def _advance(self, item: ScheduledSeq, num_new: int) -> None:
        """Record how far the sequence's K/V (and Loop window) really got."""
        seq = item.seq
        fed_end = item.start + item.num_tokens
        if item.draft:
            # Fed: last token + draft. Valid: last token + the accepted part of the draft.
            end = item.start + num_new
        else:
            end = fed_end
        if seq.replay_from is not None and end < seq.num_computed:
            seq.replay_from = end
        else:
            seq.replay_from = None
            seq.num_computed = max(seq.num_computed, end)
        if seq.window is not None:
            seq.window.commit(end, fed_end)

    def window_bytes(self, seqs: list[Sequence]) -> int:
        return sum(s.window.nbytes() for s in seqs if isinstance(s.window, LoopWindow))
