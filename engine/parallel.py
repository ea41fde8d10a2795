"""Tensor parallelism as a transform on a built model (Megatron-style, as in gpt-fast's tp.py).

Each rank keeps a slice of every decoder layer:
- q_proj, k_proj, v_proj, gate_proj, up_proj are column-parallel: the rank keeps the output
  rows of its heads (or of its slice of the MLP), biases included;
- o_proj and down_proj are row-parallel: the rank keeps the matching input columns and the
  partial outputs are summed with one all-reduce per projection;
- the Loop gate `gate_projections.N` keeps the rows of the rank's query heads;
- with fewer KV heads than ranks, each KV head is replicated on world/KVH ranks, which is
  where its query heads live.
Embeddings, norms and the LM head stay whole on every rank: they are a small share of a
code model's weights and keeping them whole avoids a gather per token.

The model file knows nothing about this; the attention modules read their head counts from
`num_heads`/`num_kv_heads`, which the transform updates. Caches must then be built with the
local KV head count (`KVCache.for_model`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .loader import LoadedModel, load_checkpoint
from .model import CausalLM


class TensorParallelError(ValueError):
    """A tensor-parallel size the model cannot be split into."""


@dataclass(frozen=True)
class Shard:
    rank: int
    world: int
    group: dist.ProcessGroup | None = None  # None: the default group


def check_tp_size(config: ModelConfig, world: int) -> None:
    """Raise TensorParallelError unless `world` ranks split heads, KV heads and the MLP evenly."""
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    valid = [n for n in range(1, heads + 1) if _splits(config, n)]
    hint = f"valid sizes for this model: {', '.join(map(str, valid))}"
    if world < 1:
        raise TensorParallelError(f"tensor-parallel size must be >= 1, got {world}; {hint}")
    if heads % world:
        raise TensorParallelError(
            f"tensor-parallel size {world} does not divide num_attention_heads {heads}; {hint}"
        )
    if kv_heads % world and world % kv_heads:
        raise TensorParallelError(
            f"tensor-parallel size {world} neither divides nor is a multiple of "
            f"num_key_value_heads {kv_heads}; {hint}"
        )
    if config.intermediate_size % world:
        raise TensorParallelError(
            f"tensor-parallel size {world} does not divide intermediate_size {config.intermediate_size}; {hint}"
        )


def _splits(config: ModelConfig, n: int) -> bool:
    kvh = config.num_key_value_heads
    return (
        config.num_attention_heads % n == 0
        and (kvh % n == 0 or n % kvh == 0)
        and config.intermediate_size % n == 0
    )


class RowParallelLinear(nn.Module):
    """A linear layer holding some input columns; partial products are summed across ranks."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, group: dist.ProcessGroup | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)  # [out, in / world]
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight)
        dist.all_reduce(out, group=self.group)
        # The bias is whole on every rank: add it once, after the sum.
        return out if self.bias is None else out + self.bias


def _keep_rows(linear: nn.Linear, rows: slice) -> None:
    # clone() so that the full tensor's storage is freed instead of kept alive by a view.
    linear.weight = nn.Parameter(linear.weight[rows].clone(), requires_grad=False)
    if linear.bias is not None:
        linear.bias = nn.Parameter(linear.bias[rows].clone(), requires_grad=False)
    linear.out_features = linear.weight.shape[0]


def _row_parallel(linear: nn.Linear, cols: slice, group: dist.ProcessGroup | None) -> RowParallelLinear:
    bias = None if linear.bias is None else linear.bias.detach()
    return RowParallelLinear(linear.weight[:, cols].clone(), bias, group)


def _part(total: int, shard: Shard) -> slice:
    size = total // shard.world
    return slice(shard.rank * size, (shard.rank + 1) * size)


def _kv_part(kv_heads: int, shard: Shard) -> slice:
    if kv_heads >= shard.world:
        return _part(kv_heads, shard)
    # Fewer KV heads than ranks: ranks rank*KVH/world share one replicated head.
    head = shard.rank // (shard.world // kv_heads)
    return slice(head, head + 1)


def _scaled(part: slice, factor: int) -> slice:
    return slice(part.start * factor, part.stop * factor)


def apply_tensor_parallel(model: CausalLM, shard: Shard) -> CausalLM:
    """Split `model` in place for `shard.rank` of `shard.world`; returns it."""
    config = model.config
    check_tp_size(config, shard.world)
    if shard.world == 1:
        return model
    d = config.head_dim
    heads = _part(config.num_attention_heads, shard)
    kv = _kv_part(config.num_key_value_heads, shard)
    ffn = _part(config.intermediate_size, shard)
    for layer in model.model.layers:
        attn = layer.self_attn
        _keep_rows(attn.q_proj, _scaled(heads, d))
        _keep_rows(attn.k_proj, _scaled(kv, d))
        _keep_rows(attn.v_proj, _scaled(kv, d))
        attn.o_proj = _row_parallel(attn.o_proj, _scaled(heads, d), shard.group)
        attn.num_heads = heads.stop - heads.start
        attn.num_kv_heads = kv.stop - kv.start
        _keep_rows(layer.mlp.gate_proj, ffn)
        _keep_rows(layer.mlp.up_proj, ffn)
        layer.mlp.down_proj = _row_parallel(layer.mlp.down_proj, ffn, shard.group)
    for gate in getattr(model.model, "gate_projections", ()):
        gate.weight = nn.Parameter(gate.weight[heads].clone(), requires_grad=False)
        gate.bias = nn.Parameter(gate.bias[heads].clone(), requires_grad=False)
    return model


def init_distributed(backend: str | None = None) -> Shard:
    """Join the process group described by the usual env vars (RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT, as torchrun sets them): NCCL when CUDA is available, else gloo."""
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend)
    return Shard(dist.get_rank(), dist.get_world_size())


def local_device(shard: Shard) -> torch.device:
    """cuda:LOCAL_RANK on GPU hosts (one process per GPU), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", shard.rank)))
    return torch.device("cpu")


def broadcast_token(token: int, device: torch.device, group: dist.ProcessGroup | None = None) -> int:
    """Rank 0's token on every rank, so that sampled (non-greedy) decoding cannot diverge."""
    buf = torch.tensor([token], dtype=torch.long, device=device)
    dist.broadcast(buf, src=0, group=group)
    return int(buf.item())


def load_tensor_parallel(
    name: str, shard: Shard, device: torch.device | None = None, dtype: str | torch.dtype | None = None
) -> LoadedModel:
    """Load a checkpoint and keep this rank's slice. Every rank reads the whole checkpoint
    first, so each device needs room for the full model while loading."""
    lm = load_checkpoint(name, device=device or local_device(shard), dtype=dtype)
    apply_tensor_parallel(lm.model, shard)
    lm.tp_size = shard.world
    return lm
