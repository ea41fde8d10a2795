"""What a backend is asked to be: its kind, model and limits (`BackendConfig`), and the error
every backend raises when it cannot be loaded or reached.

Kept free of torch so that the options and the command line can validate settings, and
report a bad one, without loading the engine.
"""

from __future__ import annotations

from dataclasses import dataclass


BACKENDS = ("native", "openai", "vllm")
CPU_WEIGHTS = ("fp32", "int8")  # how the native engine holds a model's matrices on a CPU


class BackendError(RuntimeError):
    """The backend cannot be loaded or reached; the message says why, in one line."""


@dataclass(frozen=True, kw_only=True)
class BackendConfig:
    """What `load_backend` needs; the language server builds it from its options."""

    kind: str = "native"  # one of BACKENDS
    # native, vllm: checkpoint folder, cached hub id, "tiny-random" or None (the shipped default). openai: the name the server
    # serves the model under (None: the first model the server lists).
    model: str | None = None
    device: str = "auto"  # native only
    context_tokens: int = 2048  # the caller's prompt budget (sizes the native KV pool)
    url: str | None = None  # openai: base URL of the API, e.g. http://127.0.0.1:8000/v1
    api_key: str | None = None  # openai: sent as a bearer token
    # openai: checkpoint folder or cached hub id holding the model's tokenizer (prompts are
    # tokenized here); None: the model name, when that is a folder or a cached hub id.
    tokenizer: str | None = None
    context_limit: int | None = None  # None: what the server or the checkpoint says
    timeout_s: float = 30.0  # openai: connect and between-tokens timeout
    retries: int = 3  # openai: attempts on connection errors, with exponential backoff
    tensor_parallel_size: int = 1  # native, vllm: GPUs the model is split over
    # native on a CPU: the engine in a process of its own, whose torch work then never waits
    # for the caller's Python threads (the language server's); False: a thread of the caller
    engine_process: bool = False
    # native on a CPU: "fp32" (the checkpoint widened, bit for bit the reference's numerics) or
    # "int8" (linear layers and LM head quantized per output channel as they load: model/int8.py;
    # a whole model in one process: split over CPU ranks, the ranks keep fp32)
    cpu_weights: str = "fp32"

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise BackendError(f"unknown backend {self.kind!r} (expected one of: {', '.join(BACKENDS)})")
        if self.cpu_weights not in CPU_WEIGHTS:
            raise BackendError(f"unknown CPU weights {self.cpu_weights!r} (expected one of: {', '.join(CPU_WEIGHTS)})")
        if self.timeout_s <= 0 or self.retries < 1 or self.tensor_parallel_size < 1:
            raise BackendError("timeout must be positive, retries and tensor_parallel_size at least 1")
        if self.context_limit is not None and self.context_limit < 2:
            raise BackendError(f"context limit {self.context_limit} is too small")
