"""The `native` backend: loopls's own serving engine (paged KV, prefix cache, continuous
batching) in this process, on its own worker thread."""

from __future__ import annotations

from typing import Any

import torch

from ..model.loader import CheckpointError, LoadedModel, load_checkpoint
from ..model.models import DEFAULT_MODEL, resolve_model_name
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
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pool_blocks(lm: LoadedModel, context_tokens: int) -> int:
    """KV blocks for the serving pool: on a GPU what is left beside a measured worst-case
    step (serving/memory.py), on a CPU room for a few prompts."""
    if lm.device.type == "cuda":
        return max(plan_pool(lm.model, SchedulerConfig(block_size=BLOCK_SIZE)).num_blocks, 1)
    tokens = min(lm.config.max_position_embeddings, context_tokens + 4096) * _CPU_PROMPTS
    return -(-tokens // BLOCK_SIZE)


def load_native(model_name: str | None, device: str = "auto", context_tokens: int = 2048) -> NativeBackend:
    """Load the checkpoint and start its serving engine."""
    try:
        lm = load_checkpoint(resolve_model_name(model_name), device=pick_device(device))
    except (CheckpointError, OSError, ValueError, RuntimeError) as exc:  # RuntimeError: e.g. an unusable device
        raise BackendError(str(exc)) from None
    config = SchedulerConfig(num_blocks=pool_blocks(lm, context_tokens), block_size=BLOCK_SIZE)
    engine = AsyncEngine.from_loaded(lm, config)
    engine.start()
    return NativeBackend(lm, engine, str(model_name or DEFAULT_MODEL))
