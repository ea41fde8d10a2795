"""A generation in flight for a document, kept while the user types what it is writing.

The user often types the very characters the model is generating. A keystroke that arrives
while an automatic generation runs does not cancel it when the generation has written
something and the characters typed since its request are a prefix of the text generated so
far, or the text generated so far is a prefix of them (the model may still write the rest):
the newer request waits on the same generation and answers with what follows the typed
characters (type-through). Before its first token a keystroke cancels it: there is nothing
to agree with yet, and the new request's prompt holds what was typed. The check is
repeated for every new token against the newest request's typed text, and the generation is
cancelled as soon as the two diverge; a deletion, a move or divergent text cancels it at
the keystroke, as before. When the last request waiting on it is cancelled by the client,
it runs on for `ORPHAN_S` only, enough for the request of the keystroke that follows (a
client cancels the old request before it sends the new one). Whoever cancels it says why
(`waste.py` accounts its tokens under that reason).

An automatic request may answer before its generation ends, with the complete lines
written so far (`service.py`): the generation is then `answered` and runs on to its end
without a waiter, so that its whole suggestion reaches the cache for the keystrokes that
type through the lines shown (it still stops at a keystroke that does not agree with it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .cache import Snapshot

ORPHAN_S = 0.5


@dataclass(eq=False)
class Flight:
    at: Snapshot  # the text around the cursor of the request that started it
    attachable: bool  # an automatic request's single generation (an explicit one is not shared)
    task: asyncio.Future | None = None  # the generation: its suggestions, or cancelled
    raw: str = ""  # what the model has written so far
    typed: str = ""  # what the user has typed at the cursor since, as of the newest request
    waiters: int = 0
    kept: bool = False  # a newer keystroke typed through it at least once
    tokens: int = 0  # tokens written so far (of its first candidate)
    spent: int = 0  # tokens of its candidates that ran to their end
    why: str = ""  # why it was cancelled (the reasons of waste.py)
    cancelled_at: float | None = None  # perf_counter() when the cancel was decided
    seen: int = 0  # tokens it had written then
    streams: list = field(default_factory=list)  # its engine requests, stopped at once on a cancel
    # stores what may be shown of it so far in the suggestion cache, and says whether there
    # was any (an automatic request's generation at a multi-line site: service.py, step 7)
    part: Callable[[], bool] | None = None
    answered: int | None = None  # tokens written when a request answered with part of it (it runs on)
    shown: int = 0  # its first tokens that answers have shown
    rest: int = 0  # tokens after the part answered, booked as waste (`waste.py`) until a request shows them
    first_at: float | None = None  # perf_counter() at its first token
    _orphan: asyncio.TimerHandle | None = None
    _line: asyncio.Event = field(default_factory=asyncio.Event)  # set when `raw` gains a line break

    def consistent(self, typed: str) -> bool:
        return self.raw.startswith(typed) or typed.startswith(self.raw)

    def keep_for(self, text: str, offset: int) -> bool:
        """Whether a request at (`text`, `offset`) may wait on this generation; if so, the
        typed characters become the ones every new token is checked against."""
        if not self.attachable or self.task is None or self.task.done() or not self.raw:
            # before its first token there is nothing to agree with: a new request, whose
            # prompt holds the typed text, costs no more than the prefill this one has done
            return False
        typed = self.at.typed(text, offset)
        if typed is None or not self.consistent(typed):
            return False
        self.typed, self.kept = typed, True
        return True

    def wrote(self, raw: str, tokens: int) -> None:
        """New text from the model (`tokens` tokens so far): cancel the generation once it
        leaves what was typed."""
        if raw.count("\n") > self.raw.count("\n"):
            self._line.set()
        self.raw, self.tokens = raw, tokens
        if self.first_at is None and tokens:
            self.first_at = time.perf_counter()
        if not self.consistent(self.typed) and self.task is not None:
            self._decided("diverged")
            self.task.cancel()
            self._stop()

    def cancel(self, why: str) -> None:
        if self._orphan is not None:
            self._orphan.cancel()
        if self.task is not None:
            if not self.task.done():
                self._decided(why)
            self.task.cancel()
            self._stop()

    def _stop(self) -> None:
        # The engine hears of the cancel now, not after the event loop has unwound the
        # task (a few loop turns, each of which may wait for the interpreter): every step
        # it runs meanwhile is a token nobody will see. Called after `task.cancel()`: the
        # generation's own cancel of its stream then runs before the openai backend's HTTP
        # task starts closing its connection (a second cancel during that close would
        # interrupt it and leave the server generating).
        for stream in self.streams:
            stream.cancel()

    def _decided(self, why: str) -> None:
        if self.cancelled_at is None:  # the first reason is the one that cancelled it
            self.why, self.cancelled_at, self.seen = why, time.perf_counter(), self.tokens

    async def wait(self, until: float | None = None, line: bool = False) -> bool:
        """Wait for the generation to end (done or cancelled), or until `perf_counter()`
        reaches `until`, or (`line`) until the model writes another line break; whether it
        ended. Cancelling the waiter leaves it running for the next keystroke's request, for
        a while (to its end once a request answered with part of it)."""
        assert self.task is not None
        self.waiters += 1
        if self._orphan is not None:
            self._orphan.cancel()
            self._orphan = None
        waits: set[asyncio.Future] = {self.task}
        if line:
            self._line.clear()
            waits.add(asyncio.ensure_future(self._line.wait()))
        try:
            timeout = None if until is None else max(0.0, until - time.perf_counter())
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            return self.task.done()
        finally:
            for waiting in waits - {self.task}:
                waiting.cancel()
            self.waiters -= 1
            if not self.waiters and not self.task.done() and self.answered is None:
                if self.attachable:
                    self._orphan = asyncio.get_running_loop().call_later(ORPHAN_S, self._drop)
                else:
                    self.cancel("explicit")

    def _drop(self) -> None:
        self._orphan = None
        # a request that waited for a line break and then answered with the lines so far left
        # it without waiters before it was `answered`: it runs on all the same
        if not self.waiters and self.task is not None and self.answered is None:
            self.cancel("orphaned")
