"""Per-request sampling parameters: plain data, without torch, so that the language server
builds requests without importing the engine (the sampler that draws with them: sampler.py)."""

from __future__ import annotations

from dataclasses import dataclass

from .rerank import SCORES


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    # 0: prefill only: the prompt's K/V go into the prefix cache and the request ends with no
    # token and no logits row (a warm-up for the requests that share the prompt's start)
    max_tokens: int = 64
    temperature: float = 0.0  # 0 means greedy
    top_k: int = 0  # 0 disables
    top_p: float = 1.0
    seed: int | None = None
    min_tokens: int = 0  # stop ids are suppressed until this many tokens exist
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    # None: no log-probabilities; 0: each output token's; n > 0: and the n most likely tokens
    # of each step with theirs: of the model's distribution before temperature, without the
    # stop tokens `min_tokens` still bans.
    logprobs: int | None = None
    # > 1 (greedy only): continue each of the `best_of` most likely first tokens greedily, as
    # one batch over the shared prompt, and return the candidate with the best
    # `best_of_score` (rerank.SCORES); the native backend does it (backends/best_of.py).
    best_of: int = 1
    best_of_score: str = "mean"

    def __post_init__(self) -> None:
        if self.max_tokens < 0:
            raise ValueError("max_tokens must be >= 0 (0: prefill only)")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError("logprobs must be >= 0 (or None)")
        if self.best_of < 1:
            raise ValueError("best_of must be at least 1")
        if self.best_of > 1 and self.temperature != 0:
            raise ValueError("best_of > 1 continues the most likely first tokens greedily: temperature must be 0")
        if self.best_of_score not in SCORES:
            raise ValueError(f"best_of_score must be one of {', '.join(SCORES)}")
