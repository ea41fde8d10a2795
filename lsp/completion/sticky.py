"""The other files' part of the prompt stays the same while the user types on one line.

The context engine chooses snippets of other files for each request; a keystroke can change
that choice (the line's new word matches another symbol), and every token after the first
changed one then misses the engine's prefix cache: the request after the pause recomputes
the whole prompt (seconds on a CPU) instead of the line and what follows it. So, per
document, the context part chosen at the first request on a line is kept for the later
requests on the same line (the same text before the line and after the cursor), joined to
each request's own window of the current file, as long as the two fit the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cache import CONTEXT_CHARS


@dataclass(frozen=True)
class _Kept:
    line: tuple[str, str, int]  # text before the cursor's line, after the cursor, characters after it
    ids: tuple[int, ...]  # the context part of the prompt (other files, before the current file)
    files: int  # how many other files it quotes


class StickyContext:
    def __init__(self) -> None:
        self._docs: dict[str, _Kept] = {}

    def prompt(self, uri: str, text: str, offset: int, ids: list[int], context_tokens: int, files: int,
               budget: int) -> tuple[list[int], int]:
        """The prompt to send for `ids` (a packed prompt whose first `context_tokens` ids are
        other files, quoting `files` of them) and how many files it quotes."""
        if not context_tokens:
            return ids, files  # the buffer alone: nothing to keep
        line_start = text.rfind("\n", 0, offset) + 1
        line = (text[max(0, line_start - CONTEXT_CHARS):line_start], text[offset:offset + CONTEXT_CHARS],
                len(text) - offset)
        kept = self._docs.get(uri)
        if kept is not None and kept.line == line and len(kept.ids) + len(ids) - context_tokens <= budget:
            return [*kept.ids, *ids[context_tokens:]], kept.files
        self._docs[uri] = _Kept(line, tuple(ids[:context_tokens]), files)
        return ids, files

    def __len__(self) -> int:
        return len(self._docs)

    def forget(self, uri: str) -> None:
        self._docs.pop(uri, None)
