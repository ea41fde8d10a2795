"""Backends: what the language server, the CLI and the demo use of an inference engine.

`base.Backend` is the interface (tokenizer, context limit, submit/stream/cancel, info);
`native` runs loopls's own serving engine in process, `openai` talks to any OpenAI-compatible
server (vLLM, SGLang, llama.cpp's server, `loopls serve`) over HTTP, and `vllm` runs vLLM's
async engine in process (the optional extra `loopls[vllm]`). `load_backend` picks one.
"""

from __future__ import annotations

from .base import BACKENDS, Backend, BackendConfig, BackendError, BackendInfo, Stream


def load_backend(config: BackendConfig) -> Backend:
    """Load the backend `config.kind`; raises BackendError with a one-line reason."""
    # Imported on demand: each backend pulls in its own stack (torch engine, HTTP client, vLLM).
    if config.kind == "openai":
        from .openai import load_openai

        return load_openai(config)
    if config.kind == "vllm":
        from .vllm import load_vllm

        return load_vllm(config)
    from .native import load_native

    return load_native(config)


__all__ = ["BACKENDS", "Backend", "BackendConfig", "BackendError", "BackendInfo", "Stream", "load_backend"]
