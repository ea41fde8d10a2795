"""Typing through a shown suggestion must not wait for the model again.

After a completion at some cursor, the user typically types the suggestion's first
characters. If the text after the cursor is unchanged and the text before it is the old
text plus characters that the suggestion starts with, the rest of the suggestion is the
answer: no new generation, no latency.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class _Entry:
    before: str  # document text before the cursor when the items were made
    after: str  # document text after the cursor
    items: tuple[str, ...]


class CompletionCache:
    def __init__(self, max_documents: int = 64) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._max = max_documents

    def store(self, uri: str, text: str, offset: int, items: list[str]) -> None:
        if not items:
            self._entries.pop(uri, None)
            return
        self._entries[uri] = _Entry(text[:offset], text[offset:], tuple(items))
        self._entries.move_to_end(uri)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def lookup(self, uri: str, text: str, offset: int) -> list[str] | None:
        """The remaining parts of cached items the user is typing through, or None."""
        entry = self._entries.get(uri)
        if entry is None or text[offset:] != entry.after:
            return None
        before = text[:offset]
        if len(before) < len(entry.before) or not before.startswith(entry.before):
            return None
        typed = before[len(entry.before):]
        rest = [item[len(typed):] for item in entry.items if item.startswith(typed) and len(item) > len(typed)]
        return rest or None

    def forget(self, uri: str) -> None:
        self._entries.pop(uri, None)
