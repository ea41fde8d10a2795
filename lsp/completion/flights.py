"""The generations in flight, one per document, and the book of the tokens they waste.

The completion service asks here, for each request, which generation it may wait on (one
its keystroke types through, `flight.py`); every other generation is cancelled with its
reason: the document's own when the keystroke does not agree with it (`typing`, or
`resumed` after a pause), the other documents' because the user types elsewhere now
(`moved`). A launched generation runs as a task owned by the document, not by the request;
when it ends, its suggestions go to the caller's `store`, and a generation that ends with
nothing to show, or is cancelled, is booked in the waste ledger (`waste.py`), less the
tokens an answer showed; so is what one runs on to write after an answer made of its
first lines, until a request shows it (`shown`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ContextManager

from .cache import Snapshot
from .flight import Flight
from .waste import WasteLedger

log = logging.getLogger(__name__)


class Flights:
    def __init__(self, stats: Any, quiet: Callable[[], ContextManager] = contextlib.nullcontext) -> None:
        self.stats = stats  # the service's stats: `cancelled` and `kept` are counted here
        self.quiet = quiet  # while a generation runs: the server's background work waits (GIL)
        self.waste = WasteLedger()
        self._by_uri: dict[str, Flight] = {}

    def for_request(self, uri: str, text: str, offset: int, invoked: bool,
                    resumed: Callable[[], bool]) -> Flight | None:
        """The generation a request at (`text`, `offset`) of `uri` may wait on, if any; every
        other generation in flight is cancelled. `resumed()`: whether the keystroke ended a
        pause (the reason a disagreeing generation is booked under)."""
        for other in [u for u in self._by_uri if u != uri]:
            self._by_uri.pop(other).cancel("moved")  # the user types elsewhere: no editor shows it now
        flight = self._by_uri.get(uri)
        if flight is not None and (invoked or not flight.keep_for(text, offset)):
            flight.cancel("resumed" if resumed() else "typing")  # the document moved on: it is stale
            flight = None
        return flight

    def launch(self, uri: str, at: Snapshot, attachable: bool,
               generate: Callable[[Flight], Awaitable[list]], store: Callable[[Flight, list], None]) -> Flight:
        """Start `generate(flight)` as the document's generation; what it returns goes to
        `store(flight, suggestions)` when not empty."""
        flight = Flight(at, attachable=attachable)
        flight.task = asyncio.ensure_future(self._fly(uri, flight, generate, store))
        flight.task.add_done_callback(_settled)
        self._by_uri[uri] = flight
        return flight

    async def _fly(self, uri: str, flight: Flight, generate: Callable[[Flight], Awaitable[list]],
                   store: Callable[[Flight, list], None]) -> list:
        try:
            with self.quiet():
                suggestions = await generate(flight)
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            if self._by_uri.get(uri) is flight:
                del self._by_uri[uri]
        if flight.kept:
            self.stats.kept += 1
        if suggestions:
            if flight.answered is not None and flight.spent > flight.shown:
                flight.rest = flight.spent - flight.shown
                self.waste.rest(flight.rest)
            store(flight, suggestions)
        else:
            self.waste.empty(flight.spent - flight.shown)
        return suggestions

    def shown(self, flight: Flight, tokens: int) -> int:
        """An answer showed the first `tokens` tokens of `flight`: how many of them no answer
        had shown before (a booked rest among them is waste no more)."""
        new = max(0, tokens - flight.shown)
        flight.shown += new
        if flight.rest and new:
            taken = min(new, flight.rest)
            flight.rest -= taken
            self.waste.rest_shown(taken)
        return new

    def current(self, uri: str, flight: Flight) -> bool:
        """Whether `flight` is still the document's generation."""
        return self._by_uri.get(uri) is flight

    def booker(self, flight: Flight, index: int) -> Callable[[int], None]:
        """What the model host calls with the tokens of candidate `index` of `flight` once
        that engine request, cancelled, has ended: the waste ledger books them, less those an
        answer showed, whose number it returns."""
        def wasted(tokens: int) -> int:
            latency = time.perf_counter() - flight.cancelled_at if flight.cancelled_at is not None else None
            shown = min(tokens, flight.shown) if index == 0 else 0
            self.waste.cancelled(flight.why or "other", tokens, flight.seen if index == 0 else 0, latency, shown)
            return shown
        return wasted

    def forget(self, uri: str) -> None:
        flight = self._by_uri.pop(uri, None)
        if flight is not None:
            flight.cancel("closed")  # nobody will see what it writes

    def __len__(self) -> int:
        return len(self._by_uri)


def _settled(task: asyncio.Future) -> None:
    """A generation whose requests all went away: collect its failure (the model host has
    reported it) so that it is not reported again as never retrieved."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("a completion generation failed: %s", task.exception())
