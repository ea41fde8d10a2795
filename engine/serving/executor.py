"""The device half of a step: one rank's K/V pool, its decode graphs, the forward of a step
and its sampling.

The model runner (runner.py) decides what a step computes and builds its inputs on the host
(`HostStep`); a `StepExecutor` runs it on its device: a captured CUDA graph for a plain
decode step padded to a graph batch, the eager packed forward otherwise, then the step's
sampling. Under tensor parallelism every rank has one, over its own heads' share of the K/V
pool (the same block ids everywhere) and its vocabulary shard of the LM head, runs the steps
rank 0 sends and samples them as rank 0 does (vocab_parallel.py), so every rank ends a step
holding its tokens and none waits for another's.

Nothing here waits for the device: inputs travel through pinned memory with non-blocking
copies, so a host that prepares the next step while this one runs (async scheduling,
core.py) can queue it behind. Each executor keeps the last step's sampled tokens, from which
the next step's pending ids are fed on the device.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from loopls.kernels.decode_gemm import DecodeGemm
from loopls.kernels.ops import triton_available

from ..model.attention import PagedKV, PagedStore, graph_capturable
from ..model.layers import decode_gemm_of, fuse_projections, use_decode_gemm
from ..model.sampler import sample_rows
from ..model.sampling_params import SamplingParams
from ..model.vocab_parallel import VocabShard, ban_, gather_logits, shard_argmax, shard_logits
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
        vocab: VocabShard | None = None,  # this rank's share of the LM head (None: all of it)
        track_peaks: bool = False,
    ) -> None:
        self.model = model
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        mcfg = model.config
        self.vocab = vocab or VocabShard(mcfg.vocab_size)
        self.head_weight = self.vocab.rows(model.output_weight())  # a view: [size, hidden]
        # The LM head's own product (int8 weights on a CPU: model/int8.py), whole-vocabulary only.
        self.output_head = model.output_head
        if self.output_head is not None and self.vocab.world > 1:
            raise ValueError("an LM head with its own product (int8 weights) cannot be split by vocabulary")
        self.gemm: DecodeGemm | None = None
        if self.device.type == "cuda":
            # GPU decode streams the weights: fewer, larger GEMMs (layers.FusedLinear), each
            # on cuBLAS or the skinny GEMM, whichever is faster (kernels/decode_gemm.py). CPUs
            # gain nothing, and their tests keep the checkpoint's own modules.
            fuse_projections(model)
            self.gemm = self._decode_gemm(model, config)
            use_decode_gemm(model, self.gemm)
        attn = model.model.layers[0].self_attn  # a tensor-parallel rank holds only its KV heads
        self.kv = PagedKV(
            mcfg.num_hidden_layers, config.num_blocks, config.block_size, attn.num_kv_heads,
            attn.head_dim, self.dtype, self.device,
        )
        self.loops = kinds - 1
        self.sampled: torch.Tensor | None = None  # int64 [R]: the last step's sampled tokens
        # Memory probing (memory.py): each step's peak allocation beyond what was there before.
        self.peaks: list[int] | None = [] if track_peaks else None
        self.graphs: DecodeGraphs | None = None
        if config.cuda_graphs and graph_capturable(self.device):
            graphs = DecodeGraphs(model, self.kv, kinds, width, config.max_num_seqs, self.head, self.vocab.world > 1)
            if graphs.capture():
                self.graphs = graphs

    def _decode_gemm(self, model, config: SchedulerConfig) -> DecodeGemm | None:
        """The model's DecodeGemm (made once per model: its timings outlive an executor), or
        None for cuBLAS only (asked for, fp32, or no Triton)."""
        if not (config.decode_gemm and self.dtype in (torch.bfloat16, torch.float16) and triton_available()):
            return None
        layer = model.model.layers[0]
        widest = max([p.shape[0] for p in layer.parameters() if p.dim() == 2] + [self.head_weight.shape[0]])
        return decode_gemm_of(model) or DecodeGemm(self.device, widest)

    def batch_for(self, n: int) -> int:
        """The graph batch that replays a plain decode step of n sequences (0: run eagerly)."""
        return self.graphs.batch_for(n) if self.graphs is not None else 0

    def drop_graphs(self) -> None:
        self.graphs = None

    def head(self, x: torch.Tensor, ban: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final hidden states [R, hidden] -> (greedy tokens [R], logits [R, width]) with the
        banned ids [R, M] at -inf: what a decode graph ends with."""
        if self.output_head is not None:
            logits = self.output_head(x).float()
        else:
            logits = shard_logits(x, self.head_weight, self.vocab, self.gemm)
        ban_(logits, ban, self.vocab)
        return shard_argmax(logits, self.vocab), logits

    @torch.inference_mode()
    def run(
        self, step: HostStep, draws: list[tuple[int, SamplingParams, torch.Generator | None]] = (),
        stop: Callable[[], bool] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The step's forward and sampling -> (tokens [R], the whole logits rows [R, vocab] if
        the step gathers them, else None). `draws`: rows a sampler draws (the others are
        greedy), with their generators. `stop`: asked between the layers of an eager forward
        (`ForwardStopped` when it says so)."""
        before = self._before_step()
        if step.graph_batch:
            tokens, logits = self.graphs.replay(step, self.sampled)
        else:
            packed = upload(step.packed, self.device)
            tables = upload(step.tables, self.device)
            if step.feed is not None:
                apply_feed(packed, step.feed, self.sampled)
            ids, positions, meta, logit_rows, ban = unpack(
                packed, tables, step.num_tokens, step.num_seqs, step.num_logits, self.loops, step.ban_width
            )
            x = self.model.hidden_packed(ids, positions, PagedStore(self.kv, meta), logit_rows, stop)
            tokens, logits = self.head(x, ban)
        if draws:
            at = upload(np.asarray([row for row, _, _ in draws], dtype=np.int64), self.device)
            tokens[at] = sample_rows(logits[at], [p for _, p, _ in draws], [g for _, _, g in draws], self.vocab)
        full = gather_logits(logits, self.vocab) if step.gather else None
        if before is not None:
            self.peaks.append(torch.cuda.max_memory_allocated(self.device) - before)
        self.sampled = tokens
        return tokens, full

    def _before_step(self) -> int | None:
        """Bytes allocated before the step when peaks are tracked (on a GPU), else None."""
        if self.peaks is None or self.device.type != "cuda":
            return None
        # Allocation happens on the host as kernels are queued: the allocator's peak is exact
        # without a device sync.
        torch.cuda.reset_peak_memory_stats(self.device)
        return torch.cuda.memory_allocated(self.device)
