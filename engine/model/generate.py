"""Single-sequence generation: prefill, then incremental decode with a KV cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .cache import KVCache
from .loader import LoadedModel
from .parallel import broadcast_token
from .sampler import sample
from .sampling_params import SamplingParams
from .stop_strings import cut_at_stop, held_back
from .tokenizer import Tokenizer


class GenerationError(ValueError):
    """A request the engine refuses (empty prompt, prompt longer than the model allows)."""


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    timings: dict[str, float] = field(default_factory=dict)


class TextStream:
    """Decoded text of the generated ids, cut at stop strings, streamed in safe pieces.

    Each step decodes only the ids since the last clean character boundary, as a
    continuation of the token before them (`context`, usually the prompt's last id), so a
    long generation costs O(1) decoding per token instead of re-decoding everything.
    """

    def __init__(
        self, tokenizer: Tokenizer, context: int, stops: tuple[str, ...], on_text: Callable[[str], None] | None
    ) -> None:
        self._tokenizer, self._context, self._stops, self._on_text = tokenizer, context, stops, on_text
        self._stable = ""  # text of the ids before `_pending`, ending on a whole character
        self._pending: list[int] = []
        self.text = ""
        self._emitted = 0

    def update(self, new_id: int) -> bool:
        """Add one id; stream what can no longer change; True when a stop string appeared."""
        self._pending.append(new_id)
        full = self._stable + self._tokenizer.decode_continuation(self._context, self._pending)
        if not full.endswith("\ufffd"):
            self._stable, self._context, self._pending = full, new_id, []
        self.text, stopped = cut_at_stop(full, self._stops)
        self._emit(len(self.text) if stopped else len(self.text) - held_back(self.text, self._stops))
        return stopped

    def finish(self) -> None:
        self._emit(len(self.text))

    def _emit(self, upto: int) -> None:
        if self._on_text and upto > self._emitted:
            self._on_text(self.text[self._emitted : upto])
            self._emitted = upto


def _check_prompt(lm: LoadedModel, prompt_ids: list[int]) -> None:
    limit = lm.config.max_position_embeddings
    if not prompt_ids:
        raise GenerationError("empty prompt: at least one token is needed")
    if len(prompt_ids) >= limit:
        raise GenerationError(
            f"prompt of {len(prompt_ids)} tokens does not fit the model's {limit} positions "
            "(max_position_embeddings) with room for one new token"
        )
    bad = next((t for t in prompt_ids if not 0 <= t < lm.config.vocab_size), None)
    if bad is not None:
        raise GenerationError(f"token id {bad} is outside the vocabulary (size {lm.config.vocab_size})")


@torch.inference_mode()
def generate(
    lm: LoadedModel,
    prompt_ids: list[int],
    params: SamplingParams,
    cancel: threading.Event | None = None,
    on_text: Callable[[str], None] | None = None,
) -> Generation:
    """Generate after `prompt_ids`; `cancel` is checked before every forward pass.

    `on_text` receives each new piece of decoded text as soon as it can no longer change
    (streaming); the pieces add up to the returned text.
    """
    _check_prompt(lm, prompt_ids)
    max_tokens = min(params.max_tokens, lm.config.max_position_embeddings - len(prompt_ids))
    stop_ids = set(params.stop_token_ids) | set(lm.tokenizer.special.eos_ids)
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=lm.device).manual_seed(params.seed)
    cache = KVCache.for_model(lm.model, 1, len(prompt_ids) + max_tokens, lm.dtype, lm.device)
    timings = {"start": time.perf_counter()}
    out: list[int] = []
    stream, reason = TextStream(lm.tokenizer, prompt_ids[-1], params.stop, on_text), "length"
    tokens = torch.tensor([prompt_ids], device=lm.device)
    while len(out) < max_tokens:
        if cancel is not None and cancel.is_set():
            reason = "cancelled"
            break
        next_id = _next_token(lm, lm.model(tokens, cache)[:, -1], params, generator,
                              stop_ids if len(out) < params.min_tokens else set())
        timings.setdefault("first_token", time.perf_counter())
        if next_id in stop_ids:
            reason = "stop"
            break
        out.append(next_id)
        if stream.update(next_id):
            reason = "stop"
            break
        tokens = torch.tensor([[next_id]], device=lm.device)
    stream.finish()
    timings["end"] = time.perf_counter()
    return Generation(stream.text, out, reason, len(prompt_ids), _durations(timings))


def _next_token(
    lm: LoadedModel, logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None,
    suppressed: set[int],
) -> int:
    """logits [1, vocab] -> the next id; `suppressed` ids (stops before min_tokens) never win."""
    if suppressed:
        logits[:, sorted(suppressed)] = float("-inf")
    next_id = int(sample(logits, params, generator)[0])
    if lm.tp_size > 1:
        next_id = broadcast_token(next_id, lm.device)
    return next_id


def _durations(t: dict[str, float]) -> dict[str, float]:
    first = t.get("first_token", t["end"])
    return {"time_to_first_token_s": first - t["start"], "total_s": t["end"] - t["start"]}
