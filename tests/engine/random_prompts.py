"""Random prompts for the engine tests: token ids above the special ones, seeded."""

from __future__ import annotations

import torch


def random_prompt(lm, n: int, seed: int = 0) -> list[int]:
    """`n` token ids drawn from `lm`'s vocabulary (above the first 20: the special tokens)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(20, lm.config.vocab_size, (n,), generator=g).tolist()
