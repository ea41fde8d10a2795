"""The device half of a step: one rank's K/V pool, its decode graphs, and the forward of a step.

The model runner (runner.py) decides what a step computes and builds its inputs on the host
(`HostStep`); a `StepExecutor` runs it on its device: a captured CUDA graph for a plain
decode step padded to a graph batch, the eager packed forward otherwise. Under tensor
parallelism every rank has one, over its own heads' share of the K/V pool (the same block
ids everywhere), and runs the steps rank 0 sends; only rank 0 computes logits.

Nothing here waits for the device: inputs travel through pinned memory with non-blocking
copies, so a host that prepares the next step while this one runs (async scheduling,
core.py) can queue it behind. Each executor keeps the last sampled tokens it was given
(`share`: rank 0's own, broadcast to the other ranks when the step says so), from which the
next step's pending ids are fed on the device.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..model.attention import PagedKV, PagedStore, graph_capturable
from .batch import HostStep, apply_feed, unpack, upload
from .graphs import DecodeGraphs
from .scheduler import SchedulerConfig


class StepExecutor:
    def __init__(
        self,
        model,
        config: SchedulerConfig,
        kinds: int,  # loop-0 tables plus one per later Loop loop
        width: int,  # entries per block-table row
        compute_logits: bool = True,
        distributed: bool = False,
        track_peaks: bool = False,
        group: dist.ProcessGroup | None = None,  # the tensor-parallel group (None: the default one)
    ) -> None:
        self.model = model
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        mcfg = model.config
        attn = model.model.layers[0].self_attn  # a tensor-parallel rank holds only its KV heads
        self.kv = PagedKV(
            mcfg.num_hidden_layers, config.num_blocks, config.block_size, attn.num_kv_heads,
            attn.head_dim, self.dtype, self.device,
        )
        self.loops = kinds - 1
        self.compute_logits = compute_logits
        self.distributed, self.group = distributed, group
        self.sampled: torch.Tensor | None = None  # int64 [R]: the last step's sampled tokens
        # Memory probing (memory.py): each step's peak allocation beyond what was there before.
        self.peaks: list[int] | None = [] if track_peaks else None
        self.graphs: DecodeGraphs | None = None
        if config.cuda_graphs and graph_capturable(self.device):
            graphs = DecodeGraphs(model, self.kv, kinds, width, config.max_num_seqs, compute_logits, distributed)
            if graphs.capture():
                self.graphs = graphs

    def batch_for(self, n: int) -> int:
        """The graph batch that replays a plain decode step of n sequences (0: run eagerly)."""
        return self.graphs.batch_for(n) if self.graphs is not None else 0

    def drop_graphs(self) -> None:
        self.graphs = None

    @torch.inference_mode()
    def forward(self, step: HostStep) -> torch.Tensor | None:
        """Logits [R, vocab] of the step's logit rows (None where logits are not computed)."""
        before = self._before_step()
        if step.graph_batch:
            out = self.graphs.replay(step, self.sampled)
        else:
            packed = upload(step.packed, self.device)
            tables = upload(step.tables, self.device)
            if step.feed is not None:
                apply_feed(packed, step.feed, self.sampled)
            ids, positions, meta, logit_rows = unpack(
                packed, tables, step.num_tokens, step.num_seqs, step.num_logits, self.loops
            )
            store = PagedStore(self.kv, meta)
            out = self.model.forward_packed(ids, positions, store, logit_rows, self.compute_logits)
        if before is not None:
            self.peaks.append(torch.cuda.max_memory_allocated(self.device) - before)
        return out

    def share(self, tokens: torch.Tensor | None, rows: int, broadcast: bool) -> None:
        """Keep a step's sampled tokens [rows] (rank 0 passes them, the others None) for the
        next step's feed; with `broadcast`, every rank receives rank 0's (queued on the
        stream: no host sync on a GPU)."""
        if tokens is None:
            tokens = torch.empty(rows, dtype=torch.int64, device=self.device)
        if broadcast and self.distributed:
            dist.broadcast(tokens, group=self.group, group_src=0)
        self.sampled = tokens

    def _before_step(self) -> int | None:
        """Bytes allocated before the step when peaks are tracked (on a GPU), else None."""
        if self.peaks is None or self.device.type != "cuda":
            return None
        # Allocation happens on the host as kernels are queued: the allocator's peak is exact
        # without a device sync.
        torch.cuda.reset_peak_memory_stats(self.device)
        return torch.cuda.memory_allocated(self.device)
