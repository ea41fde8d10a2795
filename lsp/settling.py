"""When the deferred symbol updates of long documents run: after a pause in typing.

`Project` leaves the symbols of long open documents as they were until `settle` (a symbol
update of 20,000 module-level definitions costs ~100 ms of Python, too much for every
keystroke); this schedules that call per workspace folder, `pause_s` after its last edit and
at the latest `every_s` after the first edit not settled yet, so symbols never lag far
behind continuous typing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

SETTLE_PAUSE_S = 0.4
SETTLE_EVERY_S = 2.0


class Settler:
    def __init__(self, settle: Callable[[Hashable], None], pause_s: float = SETTLE_PAUSE_S,
                 every_s: float = SETTLE_EVERY_S) -> None:
        self._settle = settle
        self.pause_s, self.every_s = pause_s, every_s
        self._timers: dict[Hashable, tuple[float, asyncio.TimerHandle]] = {}  # key -> (first edit, timer)

    def edited(self, key: Hashable) -> None:
        """A document of `key` (a folder) changed: (re)start its timer. On the event loop."""
        loop = asyncio.get_running_loop()
        first, timer = self._timers.pop(key, (loop.time(), None))
        if timer is not None:
            timer.cancel()
        delay = min(self.pause_s, max(0.0, first + self.every_s - loop.time()))
        self._timers[key] = (first, loop.call_later(delay, self._due, key))

    def _due(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self._settle(key)

    def cancel(self) -> None:
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def __len__(self) -> int:
        return len(self._timers)
