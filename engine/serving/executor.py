"""The device half of a step: one rank's K/V pool, its decode graphs, and the forward of a step.

The model runner (runner.py) decides what a step computes and builds its inputs on the host
(`HostStep`); a `StepExecutor` runs it on its device: a captured CUDA graph for a plain
decode step padded to a graph batch, the eager packed forward otherwise. Under tensor
parallelism every rank has one, over its own heads' share of the K/V pool (the same block
ids everywhere), and runs the steps rank 0 sends; only rank 0 computes logits.
"""

from __future__ import annotations

import torch

from ..model.attention import PagedKV, PagedStore, graph_capturable
from .batch import HostStep, unpack
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
            out = self.graphs.replay(step)
        else:
            packed = torch.from_numpy(step.packed).to(self.device)
            tables = torch.from_numpy(step.tables).to(self.device)
            ids, positions, meta, logit_rows = unpack(
                packed, tables, step.num_tokens, step.num_seqs, step.num_logits, self.loops
            )
            store = PagedStore(self.kv, meta)
            out = self.model.forward_packed(ids, positions, store, logit_rows, self.compute_logits)
        if before is not None:
            self.peaks.append(torch.cuda.max_memory_allocated(self.device) - before)
        return out

    def _before_step(self) -> int | None:
        """Bytes allocated before the step when peaks are tracked (on a GPU), else None."""
        if self.peaks is None or self.device.type != "cuda":
            return None
        # Allocation happens on the host as kernels are queued: the allocator's peak is exact
        # without a device sync.
        torch.cuda.reset_peak_memory_stats(self.device)
        return torch.cuda.memory_allocated(self.device)
