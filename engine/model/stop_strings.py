"""Stop strings on decoded text: where a generation ends, and how much of its tail must wait
(no torch: the language server cuts a model's answer with them)."""

from __future__ import annotations


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters might still become a stop string (or a whole character)."""
    if text.endswith("\ufffd"):
        return len(text)  # half of a multi-byte character: wait for the rest
    return max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
