"""Loading the engine for the server and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from loopls.engine.async_engine import AsyncEngine
from loopls.engine.loader import LoadedModel, load_checkpoint
from loopls.engine.models import resolve_model_name
from loopls.engine.scheduler import SchedulerConfig

from .completion import Completer

BLOCK_SIZE = 16
# CPU: room for this many full-budget prompts at once (the prefix cache keeps the rest).
_CPU_PROMPTS = 4
# GPU: share of the memory left after the weights that the KV pool may take.
_GPU_POOL_SHARE = 0.8


@dataclass
class EngineHost:
    """A loaded model with its serving engine (started) and the completion glue."""

    completer: Completer
    engine: AsyncEngine

    def shutdown(self) -> None:
        self.engine.shutdown()


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_completer(model_name: str | None, device: str = "auto") -> Completer:
    return Completer(load_checkpoint(resolve_model_name(model_name), device=pick_device(device)))


def kv_bytes_per_token(lm: LoadedModel) -> int:
    c = lm.config
    return c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 2 * lm.dtype.itemsize


def pool_blocks(lm: LoadedModel, context_tokens: int) -> int:
    """KV blocks for the serving pool: most of the free GPU memory, or a few prompts on CPU."""
    if lm.device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(lm.device)
        return max(int(free * _GPU_POOL_SHARE) // (kv_bytes_per_token(lm) * BLOCK_SIZE), 1)
    tokens = min(lm.config.max_position_embeddings, context_tokens + 4096) * _CPU_PROMPTS
    return -(-tokens // BLOCK_SIZE)


def load_engine(model_name: str | None, device: str, context_tokens: int) -> EngineHost:
    completer = load_completer(model_name, device)
    lm = completer.lm
    config = SchedulerConfig(num_blocks=pool_blocks(lm, context_tokens), block_size=BLOCK_SIZE)
    engine = AsyncEngine.from_loaded(lm, config)
    engine.start()
    return EngineHost(completer, engine)
