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
from torch import nn

from .collectives import AllReduce
from .config import ModelConfig
from .layers import MLP
from .transformer import CausalLM


class TensorParallelError(ValueError):
    """A tensor-parallel size the model cannot be split into."""


@dataclass(frozen=True)
class Shard:
    rank: int
    world: int
    group: dist.ProcessGroup | None = None  # None: the default group

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise TensorParallelError(f"rank {self.rank} is outside a world of {self.world}")


def check_tp_size(config: ModelConfig, world: int) -> None:
    """Raise TensorParallelError unless `world` ranks split heads, KV heads and the MLP evenly."""
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    hint = f"valid sizes for this model: {', '.join(map(str, valid_tp_sizes(config)))}"
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


def valid_tp_sizes(config: ModelConfig) -> list[int]:
    """Every tensor-parallel size the model splits into evenly."""
    return [n for n in range(1, config.num_attention_heads + 1) if _splits(config, n)]


def _splits(config: ModelConfig, n: int) -> bool:
    kvh = config.num_key_value_heads
    return (
        config.num_attention_heads % n == 0
        and (kvh % n == 0 or n % kvh == 0)
        and config.intermediate_size % n == 0
    )


class RowParallelLinear(nn.Module):
    """A linear layer holding some input columns; partial products are summed across ranks
    by the model's shared `AllReduce` (collectives.py: NCCL or symmetric memory)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, reduce: AllReduce, slot: int = 0) -> None:
        super().__init__()
        # The symm-fused all-reduce's buffer region: o_proj 0, down_proj 1, so that consecutive
        # calls alternate (collectives.AllReduce.linear_add_rms_norm).
        self.slot = slot
        self.weight = nn.Parameter(weight, requires_grad=False)  # [out, in / world]
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.reduce = reduce
        self.gemm = None  # a DecodeGemm (layers.use_decode_gemm); None: cuBLAS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.reduce.linear(x, self.weight, self.gemm)
        # The bias is whole on every rank: add it once, after the sum.
        return out if self.bias is None else out + self.bias

    def add_rms_norm(
        self, x: torch.Tensor, residual: torch.Tensor, norm_weight: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(rms_norm(residual + self(x)) * norm_weight, residual + self(x)) with the sum, the add
        and the norm in one kernel where the all-reduce variant fuses them; None otherwise."""
        if self.bias is not None:
            return None
        return self.reduce.linear_add_rms_norm(x, self.weight, residual, norm_weight, eps, self.gemm, self.slot)


def _part(total: int, shard: Shard) -> slice:
    size = total // shard.world
    return slice(shard.rank * size, (shard.rank + 1) * size)


def _kv_part(kv_heads: int, shard: Shard) -> slice:
    if kv_heads >= shard.world:
        return _part(kv_heads, shard)
    # Fewer KV heads than ranks: world/KVH consecutive ranks share one replicated head,
    # the head their query heads use.
    head = shard.rank // (shard.world // kv_heads)
    return slice(head, head + 1)


def _scaled(part: slice, factor: int) -> slice:
    return slice(part.start * factor, part.stop * factor)


def shard_rule(name: str, config: ModelConfig, shard: Shard) -> tuple[int, slice] | None:
    """(dim, slice) of the full checkpoint tensor `name` that `shard` keeps; None: all of it.

    The one place that decides the split: the in-memory transform and the loader's sliced
    reads both use it.
    """
    if shard.world == 1:
        return None
    d = config.head_dim
    heads = _part(config.num_attention_heads, shard)
    kv = _kv_part(config.num_key_value_heads, shard)
    ffn = _part(config.intermediate_size, shard)
    rules = (
        (("self_attn.q_proj.weight", "self_attn.q_proj.bias"), (0, _scaled(heads, d))),
        (("self_attn.k_proj.weight", "self_attn.k_proj.bias",
          "self_attn.v_proj.weight", "self_attn.v_proj.bias"), (0, _scaled(kv, d))),
        (("self_attn.o_proj.weight",), (1, _scaled(heads, d))),
        (("mlp.gate_proj.weight", "mlp.up_proj.weight"), (0, ffn)),
        (("mlp.down_proj.weight",), (1, ffn)),
    )
    for suffixes, rule in rules:
        if name.endswith(suffixes):
            return rule
    if name.startswith("model.gate_projections."):
        return 0, heads
    return None


def apply_tensor_parallel(model: CausalLM, shard: Shard) -> CausalLM:
    """Split `model` in place for `shard.rank` of `shard.world`; returns it.

    Works on a model with real weights and on a meta-device model (the loader then fills
    the slices straight from the checkpoint).
    """
    config = model.config
    check_tp_size(config, shard.world)
    if shard.world == 1:
        return model
    if isinstance(model.model.layers[0].self_attn.o_proj, RowParallelLinear):
        raise TensorParallelError("the model is already split for tensor parallelism")
    reduce = AllReduce(shard.group)  # NCCL (gloo on CPUs) until `AllReduce.setup` picks another
    for layer in model.model.layers:
        attn = layer.self_attn
        attn.o_proj = RowParallelLinear(attn.o_proj.weight, attn.o_proj.bias, reduce, slot=0)
        layer.mlp.down_proj = RowParallelLinear(layer.mlp.down_proj.weight, None, reduce, slot=1)
        attn.num_heads = config.num_attention_heads // shard.world
        attn.num_kv_heads = max(config.num_key_value_heads // shard.world, 1)
    for name, param in list(model.named_parameters()):
        rule = shard_rule(name, config, shard)
        if rule is not None:
            dim, part = rule
            # clone() so that the full tensor's storage is freed instead of kept by a view.
            set_parameter(model, name, param.narrow(dim, part.start, part.stop - part.start).clone())
    return model


def set_parameter(model: nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, attr = name.rpartition(".")
    parent, _, proj = module_name.rpartition(".")
    if value.is_cuda and attr == "weight" and proj in ("gate_proj", "up_proj"):
        mlp = model.get_submodule(parent)
        if isinstance(mlp, MLP):
            mlp.place(proj, value)  # gate and up side by side: one GEMM on GPUs
            return
    setattr(model.get_submodule(module_name), attr, nn.Parameter(value, requires_grad=False))


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
