"""Writing the trained model as a Hugging Face checkpoint folder that loopls loads.

Weights are stored in bf16 (the loader computes in fp32 on CPUs), split into safetensors
shards of at most `shard_bytes` with the index transformers writes when they do not fit in
one file. The tied head is not stored (the embedding is the head).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from loopls.engine.model.transformer import CausalLM

SHARD_BYTES = 15 << 20  # below 16 MiB: the most a file may weigh to travel back from the GPU machine


def save_weights(model: CausalLM, folder: Path, shard_bytes: int = SHARD_BYTES) -> list[str]:
    """Write the weights; return the file names written."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.bfloat16).contiguous() for k, v in sorted(model.state_dict().items())}
    for old in folder.glob("model*.safetensors*"):  # a re-export may shard differently
        old.unlink()
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(folder / "model.safetensors"), metadata={"format": "pt"})
        return ["model.safetensors"]
    names, weight_map = [], {}
    for i, part in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(part, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
        names.append(fname)
    total = sum(t.numel() * t.element_size() for t in state.values())
    write_json(folder / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    return [*names, "model.safetensors.index.json"]


def write_config(model: CausalLM, folder: Path, extra: dict[str, Any]) -> None:
    write_json(folder / "config.json", model.config.to_dict() | extra)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
