"""Recent suggestions per document, so typing through one, backspacing or retyping does not
wait for the model again.

Each entry remembers the text before and after the cursor when its suggestions were made.
A later request hits an entry when the text after the cursor is the same and the text before
it is the entry's plus characters that a suggestion starts with (typing through it), or the
entry's exactly (backspacing back to where it was made). The answer is then what is left of
the suggestions: no generation, no latency (and the entry's `on_hit` hears of it: the
service counts the tokens of a generation that reach the user). A document keeps its `per_document` most recent
entries, the cache its `max_documents` most recently used documents.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# Only the text near the cursor is compared: a suggestion made for this line stays valid
# while nothing near it changes (edits far away do not make it wrong).
CONTEXT_CHARS = 2000


@dataclass(frozen=True)
class Snapshot:
    """The text around the cursor when something was made for it, to tell what was typed since."""

    before: str  # up to CONTEXT_CHARS of text before the cursor
    after: str  # ... and after it
    length: int  # of the whole document: what was typed since is the difference
    tail: int  # characters after the cursor

    @classmethod
    def at(cls, text: str, offset: int) -> Snapshot:
        return cls(text[max(0, offset - CONTEXT_CHARS):offset], text[offset:offset + CONTEXT_CHARS], len(text),
                   len(text) - offset)

    def typed(self, text: str, offset: int) -> str | None:
        """The characters typed at the cursor since ("" for none), or None when the text
        around the cursor changed otherwise (a deletion, an edit elsewhere near it, a move)."""
        typed_len = len(text) - self.length
        if typed_len < 0 or len(text) - offset != self.tail or text[offset:offset + CONTEXT_CHARS] != self.after:
            return None
        start = offset - typed_len
        if text[start - len(self.before):start] != self.before:
            return None
        return text[start:offset]


@dataclass(frozen=True)
class _Entry:
    at: Snapshot
    items: tuple[tuple[str, int], ...]  # (suggestion, auto-closed characters it replaces)
    alternatives: bool  # made for an explicit request (several candidates were asked for)
    on_hit: Callable[[], None] | None  # called when a request is answered from it


class SuggestionCache:
    def __init__(self, per_document: int = 8, max_documents: int = 64) -> None:
        self._docs: OrderedDict[str, list[_Entry]] = OrderedDict()
        self._per_document = per_document
        self._max_documents = max_documents

    def store(self, uri: str, text: str, offset: int, items: list[tuple[str, int]], alternatives: bool = False,
              on_hit: Callable[[], None] | None = None) -> None:
        """Remember `items` made at (`text`, `offset`), in place of those made there before."""
        if not items:
            return
        entry = _Entry(Snapshot.at(text, offset), tuple(items), alternatives, on_hit)
        entries = [e for e in self._docs.get(uri, [])
                   if (e.at.before, e.at.after) != (entry.at.before, entry.at.after)]
        self._docs[uri] = [entry, *entries][:self._per_document]
        self._docs.move_to_end(uri)
        while len(self._docs) > self._max_documents:
            self._docs.popitem(last=False)

    def lookup(self, uri: str, text: str, offset: int, alternatives: bool = False) -> list[tuple[str, int]] | None:
        """The remaining parts of cached suggestions the user is typing through (most recent
        entry first), or None. `alternatives`: only entries made for an explicit request (an
        automatic request's one suggestion does not answer a request for more)."""
        entries = self._docs.get(uri)
        if not entries:
            return None
        for entry in entries:
            if alternatives and not entry.alternatives:
                continue
            typed = entry.at.typed(text, offset)
            if typed is None:
                continue
            typed_len = len(typed)
            rest = [(item[typed_len:], replace) for item, replace in entry.items
                    if item.startswith(typed) and len(item) > typed_len]
            if rest:
                self._docs.move_to_end(uri)
                if entry.on_hit is not None:
                    entry.on_hit()
                return rest
        return None

    def __len__(self) -> int:
        return len(self._docs)

    def forget(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def clear(self) -> None:
        self._docs.clear()
