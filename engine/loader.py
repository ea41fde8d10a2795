"""Load a Hugging Face checkpoint folder (or a hub id from the local cache) into a model.

The model is built on the meta device and its parameters are assigned straight from the
safetensors files, so the weights are never held twice in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ConfigError, ModelConfig
from .model import CausalLM
from .tokenizer import Tokenizer, TokenizerError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the path and what is wrong."""


@dataclass
class LoadedModel:
    path: Path
    config: ModelConfig
    model: CausalLM
    tokenizer: Tokenizer
    dtype: torch.dtype
    device: torch.device
    untrained: bool  # a random-weight checkpoint made by `loopls model create-tiny`


def resolve_checkpoint(name: str | Path) -> Path:
    """A folder path, or a hub id `owner/name` found in the local Hugging Face cache (offline)."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: not a checkpoint folder (expected a directory)")
        return path
    text = str(name)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            raise CheckpointError(
                f"{text}: not a folder and not in the local Hugging Face cache "
                "(loopls never downloads; fetch it with `huggingface-cli download` first)"
            ) from None
    raise CheckpointError(f"{path}: no such checkpoint folder")


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{index}: unreadable index: {exc}") from None
        files = sorted({folder / f for f in weight_map.values()})
        for f in files:
            if not f.is_file():
                raise CheckpointError(f"{f}: shard named in {index.name} is missing")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors weights")
    return files


def _read_tensors(files: list[Path], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt", device=str(device)) as handle:
                for name in handle.keys():
                    tensors[name] = handle.get_tensor(name).to(dtype)
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CheckpointError(f"{f}: unreadable or truncated safetensors file: {exc}") from None
    return tensors


def load_checkpoint(
    name: str | Path, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
) -> LoadedModel:
    folder = resolve_checkpoint(name)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: missing config.json")
    try:
        config = ModelConfig.from_file(config_path)
    except ConfigError as exc:
        raise CheckpointError(f"{config_path}: {exc}") from None
    try:
        tokenizer = Tokenizer.from_folder(folder)
    except TokenizerError as exc:
        raise CheckpointError(str(exc)) from None
    device = torch.device(device)
    if dtype is None:
        dtype = DTYPES.get(config.torch_dtype, torch.float32)
        if device.type == "cpu" and dtype != torch.float32:
            dtype = torch.float32  # half-precision matmuls are slow or missing on CPUs
    elif isinstance(dtype, str):
        dtype = DTYPES[dtype]
    files = _weight_files(folder)
    with torch.device("meta"):
        model = CausalLM(config)
    tensors = _read_tensors(files, device, dtype)
    _check_names_and_shapes(model, tensors, folder)
    model.load_state_dict(tensors, strict=True, assign=True)
    model.eval().requires_grad_(False)
    marker = json.loads(config_path.read_text(encoding="utf-8")).get("loopls_untrained", False)
    return LoadedModel(folder, config, model, tokenizer, dtype, device, bool(marker))


def _check_names_and_shapes(model: CausalLM, tensors: dict[str, torch.Tensor], folder: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        raise CheckpointError(f"{folder}: missing weight {missing[0]}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    if unexpected:
        raise CheckpointError(f"{folder}: unexpected weight {unexpected[0]}" + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    for name, param in expected.items():
        if tuple(tensors[name].shape) != tuple(param.shape):
            raise CheckpointError(
                f"{folder}: weight {name} has shape {tuple(tensors[name].shape)}, config expects {tuple(param.shape)}"
            )
