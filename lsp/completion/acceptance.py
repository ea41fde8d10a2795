"""Acceptance signals, counted here and sent nowhere.

Every suggestion the server returns gets an id. Clients report it back: `loopls/didShowCompletion`
when the ghost text is shown, the `loopls.acceptCompletion` command when it is accepted, and
`loopls/didPartiallyAcceptCompletion` on accept-word/accept-line. Each id counts once per
signal; ids the server did not issue (or has forgotten, after `max_items`) are ignored.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from dataclasses import dataclass, field

ACCEPT_COMMAND = "loopls.acceptCompletion"
DID_SHOW = "loopls/didShowCompletion"
DID_PARTIALLY_ACCEPT = "loopls/didPartiallyAcceptCompletion"


@dataclass
class _Item:
    length: int  # of the suggestion, in UTF-16 code units (what clients report)
    signals: set[str] = field(default_factory=set)


class AcceptanceCounter:
    def __init__(self, max_items: int = 2000) -> None:
        self._items: OrderedDict[str, _Item] = OrderedDict()
        self._max = max_items
        self._prefix = os.urandom(3).hex()  # ids from an earlier server process never match
        self._ids = itertools.count(1)
        self.shown = 0
        self.accepted = 0
        self.partially_accepted = 0

    def issue(self, text: str) -> str:
        item_id = f"{self._prefix}-{next(self._ids)}"
        self._items[item_id] = _Item(len(text.encode("utf-16-le", "surrogatepass")) // 2)
        while len(self._items) > self._max:
            self._items.popitem(last=False)
        return item_id

    def _signal(self, item_id: object, name: str) -> bool:
        item = self._items.get(item_id) if isinstance(item_id, str) else None
        if item is None or name in item.signals:
            return False
        item.signals.add(name)
        return True

    def did_show(self, item_id: object) -> bool:
        if self._signal(item_id, "shown"):
            self.shown += 1
            return True
        return False

    def did_accept(self, item_id: object) -> bool:
        if self._signal(item_id, "accepted"):
            self.accepted += 1
            return True
        return False

    def did_partially_accept(self, item_id: object, accepted_length: object) -> bool:
        item = self._items.get(item_id) if isinstance(item_id, str) else None
        if item is None or type(accepted_length) is not int or not 0 < accepted_length <= item.length:
            return False
        if self._signal(item_id, "partial"):
            self.partially_accepted += 1
            return True
        return False

    def as_json(self) -> dict[str, int]:
        return {"shown": self.shown, "accepted": self.accepted, "partiallyAccepted": self.partially_accepted}
