"""Load a Hugging Face checkpoint folder (or a hub id from the local cache) into a model.

The model is built on the meta device and its parameters are assigned straight from the
safetensors files, one tensor at a time, so the weights are never held twice in memory.
Every failure is a `CheckpointError` whose one-line message names the file and the tensor.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import CheckpointError, read_checkpoint
from .config import ModelConfig
from .int8 import quantize_model
from .transformer import CausalLM
from .parallel import Shard, apply_tensor_parallel, local_device, set_parameter, shard_rule
from .tokenizer import Tokenizer

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}
# Buffers that some exporters save but that the model recomputes.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass
class LoadedModel:
    path: Path
    config: ModelConfig
    model: CausalLM
    tokenizer: Tokenizer
    dtype: torch.dtype
    device: torch.device
    untrained: bool  # a random-weight checkpoint made by `loopls model create-tiny`
    tp_size: int = 1  # ranks the model is split over (parallel.py); 1 = whole model here


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted({folder / f for f in weight_map.values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{index}: unreadable index: {exc}") from None
        for f in files:
            if not f.is_file():
                raise CheckpointError(f"{f}: shard named in {index.name} is missing")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors weights")
    return files


def _header(path: Path) -> dict[str, dict]:
    """The safetensors header of `path`, checked against the file's size tensor by tensor."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            raw_len = handle.read(8)
            if len(raw_len) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file (no header)")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > size - 8:
                raise CheckpointError(f"{path}: truncated safetensors file (header of {header_len} bytes)")
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors header: {exc}") from None
    header.pop("__metadata__", None)
    data_size = size - 8 - header_len
    for name, info in sorted(header.items(), key=lambda kv: kv[1].get("data_offsets", [0, 0])[1]):
        end = info.get("data_offsets", [0, 0])[1]
        if end > data_size:
            raise CheckpointError(
                f"{path}: truncated safetensors file: tensor {name} ends at byte {end} "
                f"but the file holds {data_size} bytes of data"
            )
    return header


def _index_tensors(files: list[Path]) -> dict[str, tuple[Path, tuple[int, ...]]]:
    """tensor name -> (file, shape), from the headers only (nothing is read yet)."""
    where: dict[str, tuple[Path, tuple[int, ...]]] = {}
    for f in files:
        for name, info in _header(f).items():
            if name.endswith(_IGNORED_SUFFIXES):
                continue
            if name in where:
                raise CheckpointError(f"{f}: tensor {name} also appears in {where[name][0].name}")
            where[name] = (f, tuple(info.get("shape", ())))
    return where


def _resolve_dtype(dtype: str | torch.dtype | None, config: ModelConfig, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        chosen = DTYPES.get(config.torch_dtype, torch.float32)
        # Half-precision matmuls are slow or missing on CPUs.
        return torch.float32 if device.type == "cpu" else chosen
    if dtype not in DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}; choose one of {', '.join(sorted(DTYPES))}")
    return DTYPES[dtype]


def load_checkpoint(
    name: str | Path,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    shard: Shard | None = None,
    int8_weights: bool = False,
) -> LoadedModel:
    """Load a checkpoint; with `shard`, only that tensor-parallel rank's slice of each weight.
    `int8_weights` (CPU, whole model): the linear layers and the LM head quantized as they load
    (int8.py); the rest stays in `dtype`."""
    meta = read_checkpoint(name)
    folder, config, tokenizer = meta.path, meta.config, meta.tokenizer
    device = torch.device(device)
    if device.type == "cuda":
        # cuDNN's SDPA builds an execution plan for every new key length, so each decode step
        # paid for one (decode ran 10x under the bandwidth roofline on an H100); flash and
        # memory-efficient kernels have no such cost.
        torch.backends.cuda.enable_cudnn_sdp(False)
    torch_dtype = _resolve_dtype(dtype, config, device)
    if int8_weights and (device.type != "cpu" or (shard is not None and shard.world > 1)):
        raise CheckpointError(f"{folder}: int8 weights run on the CPU, with the whole model in one process")
    where = _index_tensors(_weight_files(folder))
    with torch.device("meta"):
        model = CausalLM(config)
    _check_names_and_shapes(model, where, folder)
    if shard is not None:
        apply_tensor_parallel(model, shard)  # still on meta: only the slices get memory
    _assign_weights(model, where, device, torch_dtype, shard)
    model.eval().requires_grad_(False)
    if int8_weights:
        quantize_model(model)
    tp_size = shard.world if shard is not None else 1
    return LoadedModel(folder, config, model, tokenizer, torch_dtype, device, meta.untrained, tp_size)


def _check_names_and_shapes(
    model: CausalLM, where: dict[str, tuple[Path, tuple[int, ...]]], folder: Path
) -> None:
    expected = model.state_dict()
    if model.config.tie_word_embeddings:
        # Some tied checkpoints also store the (identical) head; the model uses the embedding.
        where.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(where))
    unexpected = sorted(set(where) - set(expected))
    if missing:
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{folder}: missing weight {missing[0]}{more}: no weight file holds it")
    if unexpected:
        f = where[unexpected[0]][0]
        more = f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(
            f"{f}: unexpected weight {unexpected[0]}{more} for model_type {model.config.model_type!r}"
        )
    for name, param in expected.items():
        f, shape = where[name]
        if shape != tuple(param.shape):
            raise CheckpointError(
                f"{f}: weight {name} has shape {shape}, config.json implies {tuple(param.shape)}"
            )


def _assign_weights(
    model: CausalLM,
    where: dict[str, tuple[Path, tuple[int, ...]]],
    device: torch.device,
    dtype: torch.dtype,
    shard: Shard | None,
) -> None:
    from safetensors import SafetensorError, safe_open

    by_file: dict[Path, list[str]] = {}
    for name, (f, _) in where.items():
        by_file.setdefault(f, []).append(name)
    for f, names in sorted(by_file.items()):
        name = "?"
        try:
            with safe_open(str(f), framework="pt", device=str(device)) as handle:
                for name in names:
                    rule = shard_rule(name, model.config, shard) if shard is not None else None
                    # Converting tensor by tensor keeps at most one extra tensor alive.
                    set_parameter(model, name, _read(handle, name, rule).to(dtype))
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CheckpointError(f"{f}: cannot read tensor {name}: {exc}") from None


def _read(handle, name: str, rule: tuple[int, slice] | None) -> torch.Tensor:
    if rule is None:
        return handle.get_tensor(name)
    dim, part = rule
    view = handle.get_slice(name)
    return view[part] if dim == 0 else view[:, part]


def load_tensor_parallel(
    name: str, shard: Shard, device: torch.device | None = None, dtype: str | torch.dtype | None = None,
    int8_weights: bool = False,
) -> LoadedModel:
    """Load this rank's slice of a checkpoint: the model is split on the meta device and each
    weight is read as its slice, so a rank never holds more than its share."""
    return load_checkpoint(name, device=device or local_device(shard), dtype=dtype, shard=shard,
                           int8_weights=int8_weights)
