"""Loading the engine for the server and the CLI."""

from __future__ import annotations

from loopls.engine.loader import load_checkpoint
from loopls.engine.models import resolve_model_name

from .completion import Completer


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_completer(model_name: str | None, device: str = "auto") -> Completer:
    return Completer(load_checkpoint(resolve_model_name(model_name), device=pick_device(device)))
