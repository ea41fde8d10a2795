"""Per-request sampling parameters and the token sampler."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    max_tokens: int = 64
    temperature: float = 0.0  # 0 means greedy
    top_k: int = 0  # 0 disables
    top_p: float = 1.0
    seed: int | None = None
    min_tokens: int = 0  # stop ids are suppressed until this many tokens exist
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    # the first generated token is one of these (empty: any): token healing, where the prompt
    # was backed up over its last text and the generation must write that text again
    allowed_first: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if any(t < 0 for t in self.allowed_first):
            raise ValueError("allowed_first holds token ids (>= 0)")


def keep_only(logits: torch.Tensor, allowed: tuple[int, ...]) -> None:
    """logits [V] (one row, in place): every token but `allowed` made impossible; ids past
    the vocabulary are ignored."""
    keep = torch.tensor([t for t in allowed if t < logits.shape[-1]], dtype=torch.int64, device=logits.device)
    kept = logits[keep]
    logits.fill_(float("-inf"))
    logits[keep] = kept


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """logits [B, vocab] (fp32) -> token ids [B], every row with the same parameters."""
    rows = logits.shape[0]
    return sample_rows(logits, [params] * rows, [generator] * rows)


def sample_rows(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]
) -> torch.Tensor:
    """logits [R, vocab] (fp32) -> token ids [R], row r drawn with params[r] and generators[r].

    The whole batch is sampled on the logits' device with no host sync: per-row temperature,
    top-k, then top-p masks, then an exponential race, argmax(p / E) with E ~ Exp(1) drawn
    per row, which picks token i with probability p_i (as torch.multinomial would). Rows
    sharing a generator draw their noise together; a seeded row draws from its own, so the
    same seed gives the same tokens whatever else is in the batch."""
    dev, vocab = logits.device, logits.shape[-1]
    greedy = logits.argmax(dim=-1)
    if all(p.temperature == 0 for p in params):
        return greedy
    temps = torch.tensor([p.temperature or 1.0 for p in params], device=dev)
    scaled = logits / temps[:, None]
    if any(p.top_k for p in params):
        ks = [min(p.top_k, vocab) or vocab for p in params]
        top = torch.topk(scaled, max(ks), dim=-1).values  # [R, kmax] descending
        kth = top.gather(-1, torch.tensor(ks, device=dev)[:, None] - 1)
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if any(p.top_p < 1 for p in params):
        top_p = torch.tensor([p.top_p for p in params], device=dev)[:, None]
        ordered, order = scaled.sort(dim=-1, descending=True)
        probs = ordered.softmax(-1)
        # Drop a token when the mass before it already reaches top_p; the best token stays.
        drop = ((probs.cumsum(-1) - probs) >= top_p) & (top_p < 1)
        scaled = scaled.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    noise = torch.empty_like(scaled)
    by_generator: dict[int, list[int]] = {}
    for row, gen in enumerate(generators):
        by_generator.setdefault(id(gen), []).append(row)
    for rows in by_generator.values():
        gen = generators[rows[0]]
        if len(rows) == len(generators):
            noise.exponential_(generator=gen)
        else:
            noise[rows] = torch.empty(len(rows), vocab, device=dev).exponential_(generator=gen)
    drawn = (scaled.softmax(-1) / noise).argmax(dim=-1)
    is_greedy = torch.tensor([p.temperature == 0 for p in params], device=dev)
    return torch.where(is_greedy, greedy, drawn)
