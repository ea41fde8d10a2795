"""Prompt-lookup speculative decoding for greedy requests.

Edit-like completions mostly re-type text that is already in the prompt (the line being
changed, the suffix after the cursor, a sibling function). So the draft is free: find the
latest earlier occurrence of the sequence's last n tokens (longest n first) and propose the
tokens that followed it. The runner feeds [last token, draft...] in one forward pass and keeps
the longest prefix of the draft that equals the model's own argmax at every position, plus
the model's token at the first mismatch. Every kept token is exactly what plain greedy
decoding would have produced, so the output is unchanged; only the number of passes drops.
"""

from __future__ import annotations

import numpy as np

from .sequence import MIN_DRAFT, Sequence


def propose_draft(tokens: list[int] | np.ndarray, k: int, max_ngram: int = 3, min_ngram: int = 1) -> list[int]:
    """Up to k tokens that followed the latest earlier occurrence of the trailing n-gram."""
    arr = np.asarray(tokens, dtype=np.int64)
    total = len(arr)
    if k < 1:
        return []
    for n in range(min(max_ngram, total - 1), min_ngram - 1, -1):
        # windows[i] = arr[i:i+n] for i < total - n, i.e. every earlier occurrence start
        windows = np.lib.stride_tricks.sliding_window_view(arr[: total - 1], n)
        hits = np.flatnonzero((windows == arr[total - n :]).all(axis=1))
        if hits.size:
            start = int(hits[-1]) + n
            draft = arr[start : start + k].tolist()
            if draft:
                return draft
    return []


class PromptLookup:
    """Scheduler hook: a draft of at most `k` tokens (and the sequence's adaptive limit)."""

    def __init__(self, max_ngram: int = 3, min_ngram: int = 2) -> None:
        # A single-token match predicts little; two tokens of context already do in code.
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram

    def __call__(self, seq: Sequence, k: int) -> list[int]:
        return propose_draft(seq.all_ids, min(k, seq.draft_limit), self.max_ngram, self.min_ngram)


def update_draft_limit(seq: Sequence, drafted: int, accepted: int, ceiling: int) -> None:
    """Grow the draft while drafts are taken whole, shrink it (to MIN_DRAFT at least) when
    they are rejected, so a model that does not copy pays for short drafts only (a wide verify
    pass is not free)."""
    if drafted and accepted == drafted:
        seq.draft_limit = min(ceiling, seq.draft_limit * 2)
    elif accepted < drafted // 2:
        seq.draft_limit = max(MIN_DRAFT, seq.draft_limit // 2)


def accept_greedy(draft: list[int], targets: list[int]) -> list[int]:
    """Tokens to append after verifying `draft` against the model's argmax `targets`
    [1 + len(draft)]: targets[j] is its prediction after the fed token j (j = 0 is the last
    real token)."""
    out = []
    for j, tok in enumerate(draft):
        if targets[j] != tok:
            break
        out.append(tok)
    out.append(targets[len(out)])
    return out
