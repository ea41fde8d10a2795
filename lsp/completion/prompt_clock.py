"""When to build a keystroke's prompt: just before its debounce ends, unless it opens a line.

Most automatic requests are superseded by the next keystroke during their debounce, so a
prompt built at once is usually thrown away, and building one (context selection,
tokenizing ~2,000 tokens) costs the prepare and project threads tens of milliseconds of
Python: time the engine's thread then waits for the interpreter. A keystroke on the line of
the document's previous request starts its build `lead()` before the debounce ends (twice
the median of the recent builds, plus a margin). The first request on a line builds at
once: its prompt starts the line's prefix-cache warm-up, which should run while the user
types.
"""

from __future__ import annotations

from collections import deque

from .cache import CONTEXT_CHARS

SAMPLES = 16  # recent build times remembered
MARGIN_S = 0.01


class PromptClock:
    def __init__(self) -> None:
        self._lines: dict[str, int] = {}  # uri -> hash of the text before its last request's line
        self._builds: deque[float] = deque(maxlen=SAMPLES)

    def same_line(self, uri: str, text: str, offset: int) -> bool:
        """Whether the document's previous request was on this line (the same text before
        it); remembers this one's."""
        line_start = text.rfind("\n", 0, offset) + 1
        key = hash(text[max(0, line_start - CONTEXT_CHARS):line_start])
        same = self._lines.get(uri) == key
        self._lines[uri] = key
        return same

    def built(self, seconds: float) -> None:
        self._builds.append(seconds)

    def lead(self) -> float:
        """How long before the debounce ends to start building."""
        if not self._builds:
            return MARGIN_S
        return 2 * sorted(self._builds)[len(self._builds) // 2] + MARGIN_S

    def __len__(self) -> int:
        return len(self._lines)

    def forget(self, uri: str) -> None:
        self._lines.pop(uri, None)
