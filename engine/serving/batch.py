"""The step's inputs: packed token ids, positions, K/V slots and block tables, built on the host.

Per step the work is a few numpy operations per scheduled sequence, never per layer, and the
device receives two copies (one packed integer vector, one block of block tables). Block
tables are kept in persistent host arrays, one row per live sequence, and only the entries
a sequence gained since the last step are written: a 128K-token sequence has 8K entries per
table and rebuilding them every step would cost more than the decode itself.

Under tensor parallelism every rank needs the same step. Rank 0 builds it and sends the
packed vector, the rows the step reads and the table entries written since the last step
(`HostStep.writes`); the other ranks keep a `TableMirror` of the persistent rows, so a
decode step at 64K context still sends a few hundred bytes per sequence, not its tables.

Async scheduling (core.py) builds step N+1 before step N's tokens are read back: a token
still pending reads -1 here, and the step carries a `feed` (its position in the ids, the row
of step N's sampled tokens that holds it) which the executor applies on the device.

Layout of the packed vector (int64): ids [N] | positions [N] | slots [N] | window slots
[(loops - 1) * N] | cu_seqlens_q [B + 1] | seq_lens [B] | logit rows [R] | banned ids [R * M].
A CUDA-graph decode step (`pad_to` > 0) pads every sequence-indexed field to the graph's batch
size instead: padding rows read block 0 and write nowhere (slot -1). Banned ids are the stop
tokens a row may not sample yet (`min_tokens`), -1 where a row has fewer than M; a graph step
always has M = GRAPH_BAN (a step that needs more runs eagerly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.attention import AttentionMetadata
from ..model.sampling_params import SamplingParams
from .scheduler import ScheduledSeq, StepPlan
from .sequence import Sequence


@dataclass
class HostStep:
    """One step's inputs on the host, and how logits rows map back to the plan's items."""

    packed: np.ndarray  # int64, layout in the module docstring
    tables: np.ndarray  # int32 [kinds, B, width]: loop-0 tables, then one per later loop
    num_tokens: int  # N (the padded batch for a graph step)
    num_seqs: int  # B (likewise)
    num_logits: int  # R
    item_rows: list[tuple[int, int]]  # per plan item: (first logits row, rows)
    graph_batch: int = 0  # > 0: a plain decode step padded for the graph of this batch size
    rows: np.ndarray | None = None  # int64 [n]: the persistent table rows of the step's sequences
    width: int = 0  # table entries the step reads per row
    writes: list[tuple[int, int, np.ndarray]] | None = None  # (row, first entry, int32 [kinds, k]) since the last step
    feed: np.ndarray | None = None  # int64 [2, k]: ids index, row of the previous step's sampled tokens
    ban_width: int = 0  # M: banned ids per logits row
    # Rows drawn by a sampler (temperature > 0): (row, params, generator state), for every rank.
    draws: list[tuple[int, SamplingParams, torch.Tensor]] | None = None
    gather: bool = False  # every rank gathers the whole logits rows (they are recorded)


def is_plain_decode(plan: StepPlan) -> bool:
    """Every item feeds one token and samples: the step a CUDA graph can replay."""
    return all(item.num_tokens == 1 and not item.draft and item.samples for item in plan.items)


# Banned ids per row in a decode graph: the EOS ids and a request's own stop ids fit.
GRAPH_BAN = 8


class StepBuilder:
    def __init__(
        self, block_size: int, window_loops: int, max_model_len: int, journal: bool = False,
        stop_ids: tuple[int, ...] = (),  # banned with a request's stop ids until its min_tokens
    ) -> None:
        self.block_size = block_size
        self.stop_ids = frozenset(stop_ids)
        self.kinds = 1 + window_loops
        self.width = table_width(block_size, max_model_len)
        self._tables = np.zeros((self.kinds, 8, self.width), dtype=np.int32)
        self._rows: dict[int, _Row] = {}
        self._free_rows = list(range(7, -1, -1))
        self._pending: dict[int, int] = {}
        # Table writes since the last step, for the other tensor-parallel ranks (None: not kept).
        self._writes: list[tuple[int, int, np.ndarray]] | None = [] if journal else None

    def release(self, seq: Sequence) -> None:
        """Forget a finished (or preempted) sequence's row."""
        row = self._rows.pop(id(seq), None)
        if row is not None:
            self._free_rows.append(row.index)

    def build(self, plan: StepPlan, pad_to: int = 0, pending: dict[int, int] | None = None) -> HostStep:
        """The step's inputs; `pad_to` > 0 pads a plain decode step to that many sequences.
        `pending`: id(seq) -> row of the previous step's sampled tokens holding its pending token."""
        rows = np.fromiter((self._sync(item.seq) for item in plan.items), dtype=np.int64, count=len(plan.items))
        self._pending = pending or {}
        bans = [self._banned(item) for item in plan.items]
        widest = max((len(ids) for _, ids in bans), default=0)
        if widest > GRAPH_BAN:
            pad_to = 0  # the graphs hold GRAPH_BAN banned ids per row
        if is_plain_decode(plan):
            step = self._decode(plan.items, rows, max(pad_to, len(rows)))
        else:
            step = self._mixed(plan.items, rows)
        step.ban_width = GRAPH_BAN if pad_to else widest
        step.packed = np.concatenate([step.packed, _ban_rows(bans, step.item_rows, step.num_logits, step.ban_width)])
        step.graph_batch = pad_to
        step.rows, step.width = rows, max(len(item.seq.block_table) for item in plan.items)
        step.tables = gather_tables(self._tables, rows, step.width, step.num_seqs)
        if self._writes is not None:
            step.writes, self._writes = self._writes, []
        return step

    def _decode(self, items: list[ScheduledSeq], rows: np.ndarray, b: int) -> HostStep:
        """One token per sequence, vectorised over the batch (the common step)."""
        n, bs = len(items), self.block_size
        starts = np.fromiter((item.start for item in items), dtype=np.int64, count=n)
        ids = np.zeros(b, dtype=np.int64)
        ids[:n] = [item.seq.ids(item.start, item.start + 1)[0] for item in items]
        feed = self._feed(ids, items, np.arange(n + 1))
        positions = np.zeros(b, dtype=np.int64)
        positions[:n] = starts
        slots = np.full((self.kinds, b), -1, dtype=np.int64)  # padding rows write nowhere
        slots[:, :n] = self._tables[:, rows, starts // bs].astype(np.int64) * bs + starts % bs
        seq_lens = np.ones(b, dtype=np.int64)  # a padding sequence sees one key of block 0
        seq_lens[:n] = starts + 1
        cu = np.arange(b + 1, dtype=np.int64)
        packed = np.concatenate([ids, positions, slots.reshape(-1), cu, seq_lens, np.arange(b, dtype=np.int64)])
        return HostStep(packed, np.empty(0), b, b, b, [(i, 1) for i in range(n)], feed=feed)

    def _mixed(self, items: list[ScheduledSeq], rows: np.ndarray) -> HostStep:
        """Prefill chunks, decodes and drafts of any lengths."""
        counts = [item.num_tokens for item in items]
        n, b, bs = sum(counts), len(items), self.block_size
        ids = np.zeros(n, dtype=np.int64)
        positions = np.zeros(n, dtype=np.int64)
        slots = np.zeros((self.kinds, n), dtype=np.int64)  # loop 0, then each window
        cu = np.zeros(b + 1, dtype=np.int64)
        seq_lens = np.zeros(b, dtype=np.int64)
        logit_rows, item_rows, at = [], [], 0
        for i, (item, row, k) in enumerate(zip(items, rows, counts)):
            ids[at : at + k] = _token_ids(item)
            pos = np.arange(item.start, item.start + k)
            positions[at : at + k] = pos
            slots[:, at : at + k] = self._tables[:, row, pos // bs].astype(np.int64) * bs + pos % bs
            seq_lens[i] = item.start + k
            if item.samples:  # logits of the last token, or of every draft position
                first = at + k - 1 - len(item.draft)
                item_rows.append((len(logit_rows), at + k - first))
                logit_rows.extend(range(first, at + k))
            else:
                item_rows.append((len(logit_rows), 0))
            at += k
            cu[i + 1] = at
        feed = self._feed(ids, items, cu)
        packed = np.concatenate(
            [ids, positions, slots.reshape(-1), cu, seq_lens, np.asarray(logit_rows, dtype=np.int64)]
        )
        return HostStep(packed, np.empty(0), n, b, len(logit_rows), item_rows, feed=feed)

    def _banned(self, item: ScheduledSeq) -> tuple[int, list[int]]:
        """(rows of the item that may not sample a stop id yet, those ids)."""
        seq = item.seq
        made = len(seq.output_ids) + seq.pending  # tokens still in flight count (async scheduling)
        short = seq.params.min_tokens - made
        if short <= 0:
            return 0, []
        return short, sorted(self.stop_ids | set(seq.params.stop_token_ids))

    def _feed(self, ids: np.ndarray, items: list[ScheduledSeq], cu: np.ndarray) -> np.ndarray | None:
        """Where the step feeds pending tokens (ids < 0, then zeroed): [2, k] of (ids index,
        sampled row of the previous step); None when every id is known."""
        dst = np.flatnonzero(ids < 0)
        if not dst.size:
            return None
        owners = np.searchsorted(cu, dst, side="right") - 1  # the item whose tokens hold each index
        src = [self._pending[id(items[i].seq)] for i in owners]
        ids[dst] = 0
        return np.stack([dst, np.asarray(src, dtype=np.int64)])

    def _sync(self, seq: Sequence) -> int:
        """The sequence's row, with the table entries it gained written in."""
        row = self._rows.get(id(seq))
        if row is None or row.table is not seq.block_table:
            index = row.index if row is not None else self._take_row()
            row = self._rows[id(seq)] = _Row(index, seq.block_table)
        lo, hi = row.synced, len(seq.block_table)
        if hi > lo:
            self._tables[0, row.index, lo:hi] = seq.block_table[lo:hi]
            for kind, table in enumerate(seq.window_tables, start=1):
                # -1 (a window block before every query's window) is never read; 0 keeps
                # every entry a valid block id all the same.
                self._tables[kind, row.index, lo:hi] = np.maximum(table[lo:hi], 0)
            row.synced = hi
            if self._writes is not None:
                self._writes.append((row.index, lo, self._tables[:, row.index, lo:hi].copy()))
        return row.index

    def _take_row(self) -> int:
        if not self._free_rows:
            old = self._tables.shape[1]
            self._tables = np.concatenate([self._tables, np.zeros_like(self._tables)], axis=1)
            self._free_rows = list(range(2 * old - 1, old - 1, -1))
        return self._free_rows.pop()


def _ban_rows(
    bans: list[tuple[int, list[int]]], item_rows: list[tuple[int, int]], num_logits: int, width: int
) -> np.ndarray:
    """Banned ids [R * width] (-1: none) of a step's logits rows."""
    out = np.full((num_logits, width), -1, dtype=np.int64)
    for (short, ids), (first, count) in zip(bans, item_rows):
        if ids and count:
            out[first : first + min(short, count), : len(ids)] = ids
    return out.reshape(-1)


def table_width(block_size: int, max_model_len: int) -> int:
    """Entries per persistent table row: every block a sequence of the longest length can hold."""
    return -(-max_model_len // block_size) + 1


def gather_tables(tables: np.ndarray, rows: np.ndarray, width: int, num_seqs: int) -> np.ndarray:
    """The step's tables [kinds, num_seqs, width] from persistent rows (padding rows: block 0)."""
    out = np.zeros((tables.shape[0], num_seqs, width), dtype=np.int32)
    out[:, : len(rows)] = tables[:, rows, :width]
    return out


class TableMirror:
    """A tensor-parallel rank's copy of rank 0's persistent table rows (`StepBuilder`), kept
    current by the writes each step carries."""

    def __init__(self, kinds: int, width: int) -> None:
        self._tables = np.zeros((kinds, 8, width), dtype=np.int32)

    def tables(self, step: HostStep) -> np.ndarray:
        """Apply the step's writes, then gather its tables."""
        for row, lo, values in step.writes or ():
            while row >= self._tables.shape[1]:  # rank 0 doubled its rows: so do we
                self._tables = np.concatenate([self._tables, np.zeros_like(self._tables)], axis=1)
            self._tables[:, row, lo : lo + values.shape[1]] = values
        return gather_tables(self._tables, step.rows, step.width, step.num_seqs)


@dataclass
class _Row:
    index: int
    table: list[int]  # the block_table list this row mirrors (a new list after a reset)
    synced: int = 0


def _token_ids(item: ScheduledSeq) -> list[int]:
    seq = item.seq
    return seq.ids(item.start, item.start + item.num_tokens - len(item.draft)) + item.draft


def upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on `device` without blocking the host: on CUDA a pinned copy and a
    non-blocking transfer ordered on the current stream (the caching host allocator keeps
    the pinned block until the transfer is done); on a CPU the array itself."""
    tensor = torch.from_numpy(array)
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def apply_feed(ids: torch.Tensor, feed: np.ndarray, sampled: torch.Tensor) -> None:
    """Write the previous step's sampled tokens into a step's ids on the device (`HostStep.feed`)."""
    index = upload(feed, ids.device)
    ids[index[0]] = sampled[index[1]]


def unpack(
    packed: torch.Tensor, tables: torch.Tensor, n: int, b: int, r: int, window_loops: int, ban_width: int
) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata, torch.Tensor, torch.Tensor]:
    """Device views of a packed step: (ids, positions, metadata, logit rows, banned ids [R, M])."""
    kinds = 1 + window_loops
    ids, positions, slots, cu, seq_lens, logit_rows, ban = packed.split([n, n, kinds * n, b + 1, b, r, r * ban_width])
    slots = slots.view(kinds, n)
    meta = AttentionMetadata(
        cu_seqlens_q=cu,
        seq_lens=seq_lens,
        block_tables=tables[0],
        slots=slots[0],
        window_tables=tuple(tables[1:]),
        window_slots=tuple(slots[1:]),
    )
    return ids, positions, meta, logit_rows, ban.view(r, ban_width)
