"""The `native` backend: loopls's own serving engine (paged KV, prefix cache, continuous
batching) in this process, on its own worker thread."""

from __future__ import annotations

from typing import Any

import torch

from ..model.loader import CheckpointError, LoadedModel, load_checkpoint
from ..model.models import resolve_model_name
from ..model.sampler import SamplingParams
from ..serving.async_engine import AsyncEngine, RequestStream
from ..serving.memory import plan_pool
from ..serving.scheduler import SchedulerConfig
from ..serving.sequence import Priority
from .base import BackendError, BackendInfo

BLOCK_SIZE = 16
# CPU: room for this many full-budget prompts at once (the prefix cache keeps the rest).
_CPU_PROMPTS = 4


class NativeBackend:
    def __init__(self, lm: LoadedModel, engine: AsyncEngine, model_name: str) -> None:
        self.lm = lm
        self.engine = engine
        self.tokenizer = lm.tokenizer
        self.context_limit = lm.config.max_position_embeddings
        self.info = BackendInfo(
            backend="native", model=model_name, path=str(lm.path), model_type=lm.config.model_type,
            device=str(lm.device), untrained=lm.untrained,
        )

    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        priority: Priority = Priority.INLINE,
        supersede: str | None = None,
    ) -> RequestStream:
        return self.engine.submit(prompt_ids, params, priority=priority, supersede=supersede)

    def stats(self) -> dict[str, Any]:
        return self.engine.stats()

    def shutdown(self) -> None:
        self.engine.shutdown()


def pick_device(device: str) -> str:
    """`auto`, `cpu`, `cuda` or `cuda:N` as a device that exists here; BackendError if not."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda"):
        raise BackendError(f"unknown device {device!r} (expected auto, cpu, cuda or cuda:N)")
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU was found"
            raise BackendError(f"device {device}: CUDA is not available on this machine ({why})")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise BackendError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def pool_blocks(lm: LoadedModel, context_tokens: int) -> int:
    """KV blocks for the serving pool: on a GPU what is left beside a measured worst-case
    step (serving/memory.py), on a CPU room for a few prompts."""
    if lm.device.type == "cuda":
        return max(plan_pool(lm.model, SchedulerConfig(block_size=BLOCK_SIZE)).num_blocks, 1)
    tokens = min(lm.config.max_position_embeddings, context_tokens + 4096) * _CPU_PROMPTS
    return -(-tokens // BLOCK_SIZE)


def load_native(model_name: str | None, device: str = "auto", context_tokens: int = 2048) -> NativeBackend:
    """Load the checkpoint and start its serving engine."""
    device = pick_device(device)
    try:
        lm = load_checkpoint(resolve_model_name(model_name), device=device)
    except (CheckpointError, OSError, ValueError, RuntimeError) as exc:  # RuntimeError: e.g. an unusable device
        raise BackendError(str(exc)) from None
    config = SchedulerConfig(num_blocks=pool_blocks(lm, context_tokens), block_size=BLOCK_SIZE)
    engine = AsyncEngine.from_loaded(lm, config)
    engine.start()
    return NativeBackend(lm, engine, str(model_name or "tiny"))
