"""Deterministic random weights of a model shape, built straight on a device, one
tensor-parallel slice at a time: for benchmarks and tests of shapes too large for checkpoint
files (the 14B and 40B IQuest shapes).

Every split tensor is drawn in units that any valid tensor-parallel slice is made of whole:
one unit per query head (q_proj rows, o_proj columns, Loop gate rows), per KV head (k_proj,
v_proj) and per 1/G of the MLP width, G the least common multiple of the valid sizes. Each
unit has its own seed, from the tensor's name and the unit's index, so a rank draws only its
own units, never a whole tensor, and every tensor-parallel size holds the same model:
`random_shard(config, Shard(0, 1))` is exactly the concatenation of the TP=2 ranks' shards.
Weights whole on every rank (embeddings, head) are drawn whole from their name's seed; norms
are ones. Values are N(0, std) drawn in fp32, rounded to `dtype` (small weights keep the
activations finite through 80 layers).
"""

from __future__ import annotations

import math
import zlib

import torch

from .config import ModelConfig
from .parallel import Shard, apply_tensor_parallel, set_parameter, shard_rule, valid_tp_sizes
from .transformer import CausalLM


def random_shard(
    config: ModelConfig,
    shard: Shard,
    device: torch.device | str,
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
    std: float = 0.02,
    rounded_to: torch.dtype | None = None,  # round through this dtype first (an fp32 twin of a bf16 model)
) -> CausalLM:
    """`shard`'s slice of the random model, on `device` in `dtype`."""
    device = torch.device(device)
    with torch.device("meta"):
        full = {name: p.shape for name, p in CausalLM(config).named_parameters()}
        model = CausalLM(config)
    apply_tensor_parallel(model, shard)
    groups = _unit_groups(config)
    for name, _ in list(model.named_parameters()):
        if name.endswith("norm.weight"):
            value = torch.ones(full[name], device=device, dtype=torch.float32)
        else:
            rule = _rule(name, config, shard, full[name])
            if rule is None:
                value = _draw(full[name], _seed(seed, name, 0), device, std)
            else:
                value = _draw_units(name, full[name], rule, _unit_len(name, config, groups), seed, device, std)
        if rounded_to is not None:
            value = value.to(rounded_to)
        set_parameter(model, name, value.to(dtype))
    return model.eval()


def _rule(name: str, config: ModelConfig, shard: Shard, shape: torch.Size) -> tuple[int, slice] | None:
    """The slice `shard` keeps of a split tensor (the whole of it at TP=1), or None if unsplit."""
    if shard.world > 1:
        return shard_rule(name, config, shard)
    rule = shard_rule(name, config, Shard(0, 2))  # only which dimension splits
    return None if rule is None else (rule[0], slice(0, shape[rule[0]]))


def _unit_groups(config: ModelConfig) -> int:
    """G: the MLP is drawn in 1/G slices, G the lcm of every valid tensor-parallel size."""
    groups = math.lcm(*valid_tp_sizes(config))
    if config.intermediate_size % groups:
        raise ValueError(f"intermediate_size {config.intermediate_size} is not a multiple of {groups}")
    return groups


def _unit_len(name: str, config: ModelConfig, groups: int) -> int:
    """Length along the split dimension of one unit of tensor `name`."""
    if name.startswith("model.gate_projections."):
        return 1  # a row per query head
    if ".mlp." in name:
        return config.intermediate_size // groups
    return config.head_dim  # q/k/v rows and o columns: one head


def _draw_units(
    name: str, shape: torch.Size, rule: tuple[int, slice], unit: int, seed: int, device: torch.device, std: float
) -> torch.Tensor:
    dim, part = rule
    pieces = []
    for index in range(part.start // unit, part.stop // unit):
        unit_shape = list(shape)
        unit_shape[dim] = unit
        pieces.append(_draw(unit_shape, _seed(seed, name, index + 1), device, std))
    return torch.cat(pieces, dim=dim)


def _draw(shape, seed: int, device: torch.device, std: float) -> torch.Tensor:
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(tuple(shape), generator=gen, device=device, dtype=torch.float32) * std


def _seed(seed: int, name: str, index: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode()) * 65_537 + index) % (1 << 63)
