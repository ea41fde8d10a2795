"""Backends: what the language server, the CLI and the demo use of an inference engine.

`base.Backend` is the interface (tokenizer, context limit, submit/stream/cancel, info);
`native` runs loopls's own serving engine in process. `load_backend` picks one by name.
"""

from __future__ import annotations

from .base import Backend, BackendError, BackendInfo, Stream
from .native import load_native

BACKENDS = ("native",)


def load_backend(
    kind: str, model: str | None, device: str = "auto", context_tokens: int = 2048, tensor_parallel_size: int = 1
) -> Backend:
    """Load the backend `kind` for `model`; raises BackendError with a one-line reason."""
    if kind == "native":
        return load_native(model, device, context_tokens, tensor_parallel_size)
    raise BackendError(f"unknown backend {kind!r} (expected one of: {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "BackendError", "BackendInfo", "Stream", "load_backend"]
