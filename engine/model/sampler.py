"""The token sampler: draws a batch's next tokens with each request's SamplingParams."""

from __future__ import annotations

import torch

from .sampling_params import SamplingParams
from .vocab_parallel import VocabShard, gather_logits, kth_largest, shard_argmax


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """logits [B, vocab] (fp32) -> token ids [B], every row with the same parameters."""
    rows = logits.shape[0]
    return sample_rows(logits, [params] * rows, [generator] * rows)


def sample_rows(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
    shard: VocabShard | None = None,
) -> torch.Tensor:
    """logits [R, vocab] (fp32) -> token ids [R], row r drawn with params[r] and generators[r].

    The whole batch is sampled on the logits' device with no host sync: per-row temperature,
    top-k, then top-p masks, then the Gumbel-max draw argmax(log p - log E) with E ~ Exp(1)
    drawn per row, which picks token i with probability p_i (as torch.multinomial would).
    Rows sharing a generator draw their noise together; a seeded row draws from its own, so
    the same seed gives the same tokens whatever else is in the batch.

    `shard`: the logits are this tensor-parallel rank's vocabulary shard [R, shard.width]
    (vocab_parallel.py). Every rank passes generators in the same state and gets the tokens
    one rank would draw from the whole rows: each term of the draw needs only its own
    column, the top-k threshold is an exact k-th value, and top-p gathers the whole rows."""
    shard = shard or VocabShard(logits.shape[-1])
    dev, vocab = logits.device, shard.vocab
    greedy = shard_argmax(logits, shard)
    if all(p.temperature == 0 for p in params):
        return greedy
    if shard.world > 1 and any(p.top_p < 1 for p in params):
        # The nucleus needs the sorted whole distribution: every rank samples the whole rows.
        return sample_rows(gather_logits(logits, shard), params, generators)
    temps = torch.tensor([p.temperature or 1.0 for p in params], device=dev)
    scaled = logits / temps[:, None]
    if any(p.top_k for p in params):
        ks = [min(p.top_k, vocab) or vocab for p in params]
        kth = kth_largest(scaled, torch.tensor(ks, device=dev), max(ks), shard)
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if any(p.top_p < 1 for p in params):
        top_p = torch.tensor([p.top_p for p in params], device=dev)[:, None]
        ordered, order = scaled.sort(dim=-1, descending=True)
        probs = ordered.softmax(-1)
        # Drop a token when the mass before it already reaches top_p; the best token stays.
        drop = ((probs.cumsum(-1) - probs) >= top_p) & (top_p < 1)
        scaled = scaled.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    noise = torch.empty(len(params), vocab, device=dev)
    by_generator: dict[int, list[int]] = {}
    for row, gen in enumerate(generators):
        by_generator.setdefault(id(gen), []).append(row)
    for rows in by_generator.values():
        gen = generators[rows[0]]
        if len(rows) == len(generators):
            noise.exponential_(generator=gen)
        else:
            noise[rows] = torch.empty(len(rows), vocab, device=dev).exponential_(generator=gen)
    # Every rank draws the whole rows' noise (the same numbers one rank would) and keeps its
    # columns; E is kept above 0 so that a masked token (-inf) can never become NaN.
    gumbel = -shard.columns(noise, 1.0).clamp_min_(torch.finfo(noise.dtype).tiny).log()
    drawn = shard_argmax(scaled + gumbel, shard)
    is_greedy = torch.tensor([p.temperature == 0 for p in params], device=dev)
    return torch.where(is_greedy, greedy, drawn)
