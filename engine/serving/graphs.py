"""CUDA graphs of the plain decode step (one token per sequence), one per batch size.

At batch 1 a 7B-shape decode step is hundreds of small kernel launches; launched from Python
they take longer than the weights take to stream, so the GPU idles between them. A captured
graph replays the whole step as one launch. Graphs are captured for padded batch sizes
(1, 2, 4, 8, then every multiple of 8 up to `max_num_seqs`, as vLLM does); a step of n
sequences replays the smallest size >= n with padding rows that read block 0 and write
nowhere (slot -1). Inputs live in static device buffers that each replay overwrites: the
packed vector of `batch.py` (one per size) and one block-table buffer shared by all sizes.

Capture needs attention kernels that run without host syncs (the Triton kernels behind
`loopls.kernels.ops`). With the plain-torch reference, which reads sequence lengths on the
host, capture fails: the runner then logs why and runs every step eagerly.

A graph ends with the step's greedy tokens: the LM head (on a tensor-parallel rank, its
vocabulary shard), the stop ids a row may not sample yet set to -inf, and the argmax over the
whole vocabulary (vocab_parallel.py). Rows drawn by a sampler are redrawn after the replay from
the logits it leaves.

Under tensor parallelism the graphs hold the step's all-reduces too (NCCL kernels or the
symmetric-memory ones) and the argmax's all-gather, so a decode step is one launch per rank
with no host work per layer. Every rank captures the same sizes in the same order, together (the warm-up and the
capture run collectives). Capture is then confined to this thread: another thread's CUDA
calls (NCCL's watchdog polls its events) must not invalidate it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from ..model.attention import PagedKV, PagedStore
from .batch import GRAPH_BAN, HostStep, apply_feed, unpack

log = logging.getLogger("loopls.engine")


def batch_sizes(max_num_seqs: int) -> list[int]:
    sizes = [s for s in (1, 2, 4) if s < max_num_seqs] + list(range(8, max_num_seqs, 8))
    return sizes + [max_num_seqs]


class DecodeGraphs:
    def __init__(
        self, model, kv: PagedKV, kinds: int, width: int, max_num_seqs: int,
        head: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        distributed: bool = False,
    ) -> None:
        self.model = model
        self.head = head  # (hidden [R, hidden], banned ids [R, M]) -> (greedy tokens [R], logits [R, width])
        self.kv = kv
        self.sizes = batch_sizes(max_num_seqs)
        device = kv.k.device
        # kinds: the loop-0 table, then one per later loop; width: entries per table row
        self.tables = torch.zeros(kinds, self.sizes[-1], width, dtype=torch.int32, device=device)
        self.loops = kinds - 1
        self.capture_mode = "thread_local" if distributed else "global"
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = {}
        self._pool = None

    def batch_for(self, n: int) -> int:
        """The captured batch size that runs n sequences (0: none)."""
        return next((s for s in self.sizes if s >= n), 0) if self._graphs else 0

    def capture(self) -> bool:
        """Capture every size, largest first so that smaller graphs reuse its memory pool.
        False (graphs off, reason logged) if the step cannot be captured."""
        try:
            for size in reversed(self.sizes):
                self._graphs[size] = self._capture(size)
        except (RuntimeError, TypeError, ValueError) as exc:
            log.warning("CUDA graphs off, decode steps run eagerly: %s", exc)
            self._graphs.clear()
            return False
        return True

    def _capture(self, size: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        device = self.tables.device
        # A valid decode step of `size` padding sequences: every row reads block 0, writes nowhere.
        n = size
        packed = np.concatenate([
            np.zeros(2 * n, dtype=np.int64), np.full((1 + self.loops) * n, -1, dtype=np.int64),
            np.arange(n + 1, dtype=np.int64), np.ones(n, dtype=np.int64), np.arange(n, dtype=np.int64),
            np.full(n * GRAPH_BAN, -1, dtype=np.int64),
        ])
        static = torch.from_numpy(packed).to(device)
        self.tables.zero_()

        def step() -> tuple[torch.Tensor, torch.Tensor]:
            ids, positions, meta, _, ban = unpack(static, self.tables[:, :size], n, n, n, self.loops, GRAPH_BAN)
            return self.head(self.model.hidden_packed(ids, positions, PagedStore(self.kv, meta)), ban)

        with torch.inference_mode():
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):  # warm-up (kernel compilation, allocator) off the capture
                step()
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode=self.capture_mode):
                out = step()
        self._pool = graph.pool()
        return graph, static, out

    @torch.inference_mode()
    def replay(self, step: HostStep, sampled: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(greedy tokens [graph batch], logits [graph batch, width]) of a decode step built
        with `pad_to` = its graph batch: static buffers, overwritten by the next replay.
        `sampled`: the previous step's tokens, for the step's feed. Nothing waits for the
        device: the inputs are copied from pinned memory behind whatever the stream runs now."""
        graph, static, out = self._graphs[step.graph_batch]
        static.copy_(torch.from_numpy(step.packed).pin_memory(), non_blocking=True)
        if step.feed is not None:
            apply_feed(static, step.feed, sampled)
        width = step.tables.shape[2]
        self.tables[:, : step.num_seqs, :width].copy_(torch.from_numpy(step.tables).pin_memory(), non_blocking=True)
        graph.replay()
        return out
