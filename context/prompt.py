"""Fill-in-the-middle prompts from the current buffer, within a token budget.

Token counts are exact: they come from the model's own tokenizer, passed in as any object
with `encode(text) -> list[int]` (this package never imports the engine or torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class TokenCounter(Protocol):
    def encode(self, text: str) -> list[int]: ...


# <fim_prefix>, <fim_suffix>, <fim_middle>: the special tokens around the two halves.
FIM_OVERHEAD_TOKENS = 3


@dataclass(frozen=True)
class FimPrompt:
    prefix: str
    suffix: str
    prefix_tokens: list[int]
    suffix_tokens: list[int]
    truncated: bool  # whether text was dropped to meet the budget

    @property
    def tokens(self) -> int:
        return len(self.prefix_tokens) + len(self.suffix_tokens) + FIM_OVERHEAD_TOKENS


def _lines_keepends(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _take_tail(text: str, counter: TokenCounter, budget: int) -> str:
    """The longest suffix of `text` (whole lines first, then characters) within `budget` tokens."""
    if budget <= 0 or not text:
        return ""
    if len(counter.encode(text)) <= budget:
        return text
    lines = _lines_keepends(text)
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        cost = len(counter.encode(line))
        if used + cost > budget:
            break
        kept.append(line)
        used += cost
    if not kept:  # a single line longer than the budget: cut by characters
        return _fit_chars(lines[-1], counter, budget, keep_end=True)
    out = "".join(reversed(kept))
    while out and len(counter.encode(out)) > budget:  # merges across lines can differ by a token
        out = out.split("\n", 1)[1] if "\n" in out[:-1] else ""
    return out


def _take_head(text: str, counter: TokenCounter, budget: int) -> str:
    """The longest prefix of `text` (whole lines first, then characters) within `budget` tokens."""
    if budget <= 0 or not text:
        return ""
    if len(counter.encode(text)) <= budget:
        return text
    lines = _lines_keepends(text)
    kept: list[str] = []
    used = 0
    for line in lines:
        cost = len(counter.encode(line))
        if used + cost > budget:
            break
        kept.append(line)
        used += cost
    if not kept:
        return _fit_chars(lines[0], counter, budget, keep_end=False)
    out = "".join(kept)
    while out and len(counter.encode(out)) > budget:
        out = out[: out.rstrip("\n").rfind("\n") + 1]
    return out


def _fit_chars(line: str, counter: TokenCounter, budget: int, keep_end: bool) -> str:
    """Binary search for the most characters of one line (from its end or start) in budget."""
    lo, hi = 0, len(line)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        piece = line[len(line) - mid:] if keep_end else line[:mid]
        if len(counter.encode(piece)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return line[len(line) - lo:] if keep_end else line[:lo]


def build_fim_prompt(
    text: str,
    offset: int,
    counter: TokenCounter,
    budget: int,
    suffix_share: float = 0.25,
) -> FimPrompt:
    """Prefix and suffix around `offset` (a code-point index into `text`) within `budget`.

    The text nearest the cursor is kept first. The suffix gets at most `suffix_share` of the
    budget; whatever it leaves unused goes to the prefix.
    """
    if not 0 <= offset <= len(text):
        raise ValueError(f"offset {offset} is outside the text (0..{len(text)})")
    available = budget - FIM_OVERHEAD_TOKENS
    if available <= 0:
        raise ValueError(f"token budget {budget} is too small for a FIM prompt")
    prefix_all, suffix_all = text[:offset], text[offset:]
    suffix = _take_head(suffix_all, counter, int(available * suffix_share))
    suffix_ids = counter.encode(suffix)
    prefix = _take_tail(prefix_all, counter, available - len(suffix_ids))
    prefix_ids = counter.encode(prefix)
    if len(prefix) == len(prefix_all) and len(suffix) < len(suffix_all):
        # the prefix left budget over: give it back to the suffix
        suffix = _take_head(suffix_all, counter, available - len(prefix_ids))
        suffix_ids = counter.encode(suffix)
    truncated = len(prefix) < len(prefix_all) or len(suffix) < len(suffix_all)
    return FimPrompt(prefix, suffix, prefix_ids, suffix_ids, truncated)


def fim_token_ids(prompt: FimPrompt, special) -> list[int]:
    """Prefix-suffix-middle layout with the checkpoint's own FIM ids.

    `special` is the tokenizer's special-token record (fim_prefix/fim_suffix/fim_middle);
    a model without FIM tokens gets the prefix alone and continues it.
    """
    if None in (special.fim_prefix, special.fim_suffix, special.fim_middle):
        return list(prompt.prefix_tokens)
    return [
        special.fim_prefix, *prompt.prefix_tokens,
        special.fim_suffix, *prompt.suffix_tokens,
        special.fim_middle,
    ]
