"""The other files' part of the prompt stays the same while the user types on one line, and
when the cursor moves to a line the part was chosen near.

The context engine chooses snippets of other files for each request; a keystroke can change
that choice (the line's new word matches another symbol), and every token after the first
changed one then misses the engine's prefix cache: the request after the pause recomputes
the whole prompt (seconds on a CPU) instead of the line and what follows it. So, per
document, the context part chosen at the first request on a line is kept for the later
requests on the same line (the same text before the line and after the cursor), joined to
each request's own window of the current file, as long as the two fit the budget.

A move to another line keeps it too while the new line is near the one it was chosen on
(`NEARBY_LINES`) and inside the file window of that prompt: the context engine chose those
snippets for the names and code around that cursor (the lines before it, the definitions
used there), which the new line shares, and the line's warm-up then computes the file window
only (about half of a 2K prompt). A line farther away takes the new choice. `counts` says
how often each happened, and how often a kept part differed from the new choice it replaced
(the server's status shows them).
"""

from __future__ import annotations

from dataclasses import dataclass

from .cache import CONTEXT_CHARS

NEARBY_LINES = 30  # a kept choice serves lines this close to the one it was chosen on


@dataclass(frozen=True)
class _Kept:
    line: tuple[str, str, int]  # text before the cursor's line, after the cursor, characters after it
    row: int  # the cursor's line (0-based) when it was chosen
    rows: tuple[int, int]  # the file's lines (0-based) the window of the prompt it was chosen for showed
    ids: tuple[int, ...]  # the context part of the prompt (other files, before the current file)
    files: int  # how many other files it quotes


class StickyContext:
    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self._docs: dict[str, _Kept] = {}
        # same_line / nearby: kept (nearby_differs: the new choice it replaced was another);
        # chosen: a new choice taken (new_line_same: a new line's choice equal to the
        # previous one anyway); context_tokens / window_tokens: summed
        self.counts = counts if counts is not None else {}

    def prompt(self, uri: str, text: str, offset: int, ids: list[int], context_tokens: int, files: int,
               budget: int, window: tuple[int, int] | None = None) -> tuple[list[int], int]:
        """The prompt to send for `ids` (a packed prompt whose first `context_tokens` ids are
        other files, quoting `files` of them, around a file window that shows the lines
        `window`, 0-based, inclusive) and how many files it quotes."""
        if not context_tokens:
            return ids, files  # the buffer alone: nothing to keep
        line_start = text.rfind("\n", 0, offset) + 1
        line = (text[max(0, line_start - CONTEXT_CHARS):line_start], text[offset:offset + CONTEXT_CHARS],
                len(text) - offset)
        kept = self._docs.get(uri)
        fits = kept is not None and len(kept.ids) + len(ids) - context_tokens <= budget
        if fits and kept.line == line:
            self._count("same_line", len(kept.ids), len(ids) - context_tokens)
            return [*kept.ids, *ids[context_tokens:]], kept.files
        row = text.count("\n", 0, offset)
        if fits and kept.rows[0] <= row <= kept.rows[1] and abs(row - kept.row) <= NEARBY_LINES:
            self._docs[uri] = _Kept(line, kept.row, kept.rows, kept.ids, kept.files)
            self._count("nearby", len(kept.ids), len(ids) - context_tokens)
            if kept.ids != tuple(ids[:context_tokens]):
                self._count("nearby_differs", 0, 0)
            return [*kept.ids, *ids[context_tokens:]], kept.files
        if kept is not None and kept.ids == tuple(ids[:context_tokens]):
            self._count("new_line_same", 0, 0)
        self._docs[uri] = _Kept(line, row, window or (row, row), tuple(ids[:context_tokens]), files)
        self._count("chosen", context_tokens, len(ids) - context_tokens)
        return ids, files

    def _count(self, what: str, context_tokens: int, window_tokens: int) -> None:
        for key, n in ((what, 1), ("context_tokens", context_tokens), ("window_tokens", window_tokens)):
            self.counts[key] = self.counts.get(key, 0) + n

    def __len__(self) -> int:
        return len(self._docs)

    def forget(self, uri: str) -> None:
        self._docs.pop(uri, None)
