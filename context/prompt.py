"""Fill-in-the-middle prompts from the current buffer, within a token budget.

Token counts are exact: they come from the model's own tokenizer, passed in as any object
with `encode(text) -> list[int]` (this package never imports the engine or torch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


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


def lines_keepends(text: str) -> list[str]:
    """Lines with their breaks, split where LSP splits them: at \\n, \\r\\n and \\r only (not
    at form feeds, U+0085 or U+2028, which `str.splitlines` also takes for line breaks)."""
    return _LINE.findall(text)


def _take(text: str, counter: TokenCounter, budget: int, from_end: bool) -> str:
    """The longest run of `text` touching its end (`from_end`) or its start, within `budget`
    tokens: whole lines first, then characters of the one line that does not fit."""
    if budget <= 0 or not text:
        return ""
    if len(counter.encode(text)) <= budget:
        return text
    lines = lines_keepends(text)
    ordered = reversed(lines) if from_end else lines
    kept: list[str] = []
    used = 0
    for line in ordered:
        cost = len(counter.encode(line))
        if used + cost > budget:
            break
        kept.append(line)
        used += cost
    if not kept:  # a single line longer than the budget: cut by characters
        return _fit_chars(lines[-1] if from_end else lines[0], counter, budget, keep_end=from_end)
    if from_end:
        kept.reverse()
    # BPE merges across line boundaries can make the whole cost a token more than the parts
    while kept and len(counter.encode("".join(kept))) > budget:
        kept.pop(0 if from_end else -1)
    return "".join(kept)


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
    anchor_lines: int = 1,
    line_base: int = 0,
) -> FimPrompt:
    """Prefix and suffix around `offset` (a code-point index into `text`) within `budget`.

    The text nearest the cursor is kept first. The suffix gets at most `suffix_share` of the
    budget; whatever it leaves unused goes to the prefix. A prefix cut by the budget starts
    at a line whose number (`line_base` is the number of text[0]'s line) is a multiple of
    `anchor_lines`: while the user types, the prompt then starts at the same place keystroke
    after keystroke (an engine's prefix cache keeps hitting) instead of moving a line at a time.
    """
    if not 0 <= offset <= len(text):
        raise ValueError(f"offset {offset} is outside the text (0..{len(text)})")
    available = budget - FIM_OVERHEAD_TOKENS
    if available <= 0:
        raise ValueError(f"token budget {budget} is too small for a FIM prompt")
    prefix_all, suffix_all = text[:offset], text[offset:]
    suffix = _take(suffix_all, counter, int(available * suffix_share), from_end=False)
    suffix_ids = counter.encode(suffix)
    prefix = _take(prefix_all, counter, available - len(suffix_ids), from_end=True)
    if anchor_lines > 1 and len(prefix) < len(prefix_all):
        prefix = _anchor(prefix, line_base + prefix_all.count("\n", 0, len(prefix_all) - len(prefix)), anchor_lines)
    prefix_ids = counter.encode(prefix)
    if len(prefix) == len(prefix_all) and len(suffix) < len(suffix_all):
        # the prefix left budget over: give it back to the suffix
        suffix = _take(suffix_all, counter, available - len(prefix_ids), from_end=False)
        suffix_ids = counter.encode(suffix)
    truncated = len(prefix) < len(prefix_all) or len(suffix) < len(suffix_all)
    return FimPrompt(prefix, suffix, prefix_ids, suffix_ids, truncated)


def _anchor(prefix: str, first_line: int, every: int) -> str:
    """`prefix` (whole lines, the first numbered `first_line`) without its first lines up to
    the next line number that is a multiple of `every`; unchanged when that would leave
    nothing or when the prefix does not start at a line start."""
    drop = -first_line % every
    if not drop:
        return prefix
    lines = lines_keepends(prefix)
    return "".join(lines[drop:]) if len(lines) > drop + 1 else prefix


FIM_LAYOUTS = ("psm", "spm")


def fim_token_ids(prompt: FimPrompt, special, layout: str = "psm") -> list[int]:
    """The FIM window with the checkpoint's own FIM ids, in `layout`:

    - psm, prefix-suffix-middle: `<fim_prefix>` prefix `<fim_suffix>` suffix `<fim_middle>`;
    - spm, suffix-prefix-middle: `<fim_suffix>` suffix `<fim_prefix>` prefix `<fim_middle>`
      (Bavarian et al. 2022): the middle continues the prefix directly, and while the user
      types only the prompt's last tokens change, so an engine's prefix cache covers the rest.

    `special` is the tokenizer's special-token record (fim_prefix/fim_suffix/fim_middle);
    a model without FIM tokens gets the prefix alone and continues it.
    """
    if None in (special.fim_prefix, special.fim_suffix, special.fim_middle):
        return list(prompt.prefix_tokens)
    if layout == "spm":
        return [
            special.fim_suffix, *prompt.suffix_tokens,
            special.fim_prefix, *prompt.prefix_tokens,
            special.fim_middle,
        ]
    if layout != "psm":
        raise ValueError(f"unknown FIM layout {layout!r} (one of {', '.join(FIM_LAYOUTS)})")
    return [
        special.fim_prefix, *prompt.prefix_tokens,
        special.fim_suffix, *prompt.suffix_tokens,
        special.fim_middle,
    ]
