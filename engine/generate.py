"""Single-sequence generation: prefill, then incremental decode with a KV cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .cache import KVCache
from .loader import LoadedModel
from .sampler import SamplingParams, sample


class GenerationError(ValueError):
    """A request the engine refuses (empty prompt, prompt longer than the model allows)."""


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    timings: dict[str, float] = field(default_factory=dict)


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


@torch.inference_mode()
def generate(
    lm: LoadedModel,
    prompt_ids: list[int],
    params: SamplingParams,
    cancel: threading.Event | None = None,
    on_text: Callable[[str], None] | None = None,
) -> Generation:
    """Generate after `prompt_ids`; `cancel` is checked before every forward pass.

    `on_text` receives each new piece of decoded text as it is produced (streaming).
    """
    limit = lm.config.max_position_embeddings
    if not prompt_ids:
        raise GenerationError("empty prompt: at least one token is needed")
    if len(prompt_ids) >= limit:
        raise GenerationError(f"prompt of {len(prompt_ids)} tokens does not fit the model's {limit} positions")
    max_tokens = min(params.max_tokens, limit - len(prompt_ids))
    stop_ids = set(params.stop_token_ids) | set(lm.tokenizer.special.eos_ids)
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=lm.device).manual_seed(params.seed)
    cache = KVCache(lm.config, 1, len(prompt_ids) + max_tokens, lm.dtype, lm.device)
    timings = {"start": time.perf_counter()}
    out: list[int] = []
    text, emitted, reason = "", "", "length"
    tokens = torch.tensor([prompt_ids], device=lm.device)
    while len(out) < max_tokens:
        if cancel is not None and cancel.is_set():
            reason = "cancelled"
            break
        logits = lm.model(tokens, cache)[:, -1]
        if len(out) < params.min_tokens and stop_ids:
            logits[:, sorted(stop_ids)] = float("-inf")
        next_id = int(sample(logits, params, generator)[0])
        timings.setdefault("first_token", time.perf_counter())
        if next_id in stop_ids:
            reason = "stop"
            break
        out.append(next_id)
        new_text, stopped = _cut_at_stop(lm.tokenizer.decode(out), params.stop)
        # Hold back a trailing replacement char: it is half of a multi-byte character.
        if on_text and not new_text.endswith("\ufffd") and new_text.startswith(emitted):
            on_text(new_text[len(emitted):])
            emitted = new_text
        text = new_text
        if stopped:
            reason = "stop"
            break
        tokens = torch.tensor([[next_id]], device=lm.device)
    if on_text and len(text) > len(emitted) and text.startswith(emitted):
        on_text(text[len(emitted):])
    timings["end"] = time.perf_counter()
    return Generation(text, out, reason, len(prompt_ids), _durations(timings))


def _durations(t: dict[str, float]) -> dict[str, float]:
    first = t.get("first_token", t["end"])
    return {"time_to_first_token_s": first - t["start"], "total_s": t["end"] - t["start"]}
