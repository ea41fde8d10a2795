"""Backends: what the language server, the CLI and the demo use of an inference engine.

`base.Backend` is the interface (tokenizer, context limit, submit/stream/cancel, info);
`native` runs loopls's own serving engine (on a thread, or in worker processes of its own),
`openai` talks to any OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, `loopls
serve`) over HTTP, and `vllm` runs vLLM's async engine in process (the optional extra
`loopls[vllm]`). `load_backend` picks one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The config and the interface import no torch (the language server, the options and the
# command line use them; a bad setting is reported in milliseconds): the backends themselves
# are imported on demand by load_backend.
from .base import Backend, BackendInfo, LoadStop, Stream
from .config import BACKENDS, CPU_WEIGHTS, BackendConfig, BackendError

if TYPE_CHECKING:
    from ..serving.standby import StandbyProcess


def load_backend(config: BackendConfig, stop: LoadStop | None = None,
                 standby: StandbyProcess | None = None) -> Backend:
    """Load the backend `config.kind`; raises BackendError with a one-line reason (also when
    `stop` stopped the load: see base.LoadStop). `standby`: an engine process started ahead
    (serving/standby.py), which the native engine in a process of its own runs in."""
    # Imported on demand: each backend pulls in its own stack (torch engine, HTTP client, vLLM).
    if config.kind == "openai":
        from .openai import load_openai

        return load_openai(config)
    if config.kind == "vllm":
        from .vllm import load_vllm

        return load_vllm(config)
    from .native import load_native

    return load_native(config, stop, standby)


__all__ = ["BACKENDS", "CPU_WEIGHTS", "Backend", "BackendConfig", "BackendError", "BackendInfo", "LoadStop", "Stream",
           "load_backend"]
