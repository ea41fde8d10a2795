"""Keeping a generation in flight while the user types what it writes (pure logic)."""

from __future__ import annotations

import asyncio
import time

from loopls.lsp.completion.cache import Snapshot
from loopls.lsp.completion.flight import Flight

TEXT = "def f(x):\n    value = \n"
CURSOR = TEXT.index("\n", 10)


def _typed(chars: str) -> tuple[str, int]:
    return TEXT[:CURSOR] + chars + TEXT[CURSOR:], CURSOR + len(chars)


async def _flight(attachable: bool = True) -> Flight:
    flight = Flight(Snapshot.at(TEXT, CURSOR), attachable)
    flight.task = asyncio.ensure_future(asyncio.sleep(3600))
    return flight


async def test_typing_what_was_written_or_may_still_be_written_keeps_it() -> None:
    flight = await _flight()
    flight.wrote("compute", 2)
    assert flight.keep_for(*_typed("comp")) and flight.typed == "comp"
    assert flight.keep_for(*_typed("compute(x")) and flight.typed == "compute(x"  # beyond what is written yet
    assert flight.keep_for(*_typed(""))  # the same place again
    assert flight.kept
    flight.wrote("compute(x)", 3)
    assert not flight.task.cancelled()
    flight.cancel("typing")


async def test_divergent_text_deletions_and_moves_do_not_keep_it() -> None:
    flight = await _flight()
    flight.wrote("compute", 2)
    assert not flight.keep_for(*_typed("cone"))
    text, offset = _typed("")
    assert not flight.keep_for(text[:offset - 1] + text[offset:], offset - 1)  # a backspace
    assert not flight.keep_for(TEXT, CURSOR - 2)  # the cursor moved
    assert not flight.keep_for("x = 1\n" + TEXT, CURSOR + 6)  # an edit before it: the document grew elsewhere
    assert not flight.kept
    explicit = await _flight(attachable=False)
    assert not explicit.keep_for(*_typed("c"))
    flight.cancel("typing")
    explicit.cancel("typing")


async def test_a_token_that_leaves_the_typed_text_cancels_it() -> None:
    flight = await _flight()
    flight.wrote("com", 1)
    assert flight.keep_for(*_typed("compute"))
    flight.wrote("compu", 1)
    await asyncio.sleep(0)
    assert not flight.task.cancelled()
    flight.wrote("compare", 2)
    await asyncio.sleep(0)
    assert flight.task.cancelled()


async def test_a_flight_nobody_waits_for_ends_after_a_grace_period(monkeypatch) -> None:
    monkeypatch.setattr("loopls.lsp.completion.flight.ORPHAN_S", 0.05)
    flight = await _flight()
    waiter = asyncio.ensure_future(flight.wait())
    await asyncio.sleep(0)
    waiter.cancel()  # the client cancelled the request: the next keystroke's may still want it
    await asyncio.gather(waiter, return_exceptions=True)
    assert flight.waiters == 0 and not flight.task.done()
    again = asyncio.ensure_future(flight.wait())  # ... and here it is
    await asyncio.sleep(0.1)
    assert not flight.task.done()
    again.cancel()
    await asyncio.gather(again, return_exceptions=True)
    await asyncio.sleep(0.1)
    assert flight.task.cancelled()


async def test_an_explicit_request_s_generation_ends_with_its_request() -> None:
    flight = await _flight(attachable=False)
    waiter = asyncio.ensure_future(flight.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await asyncio.sleep(0)
    assert flight.task.cancelled()


async def test_before_its_first_token_a_keystroke_does_not_keep_it() -> None:
    flight = await _flight()
    assert not flight.keep_for(*_typed("c"))  # nothing written yet: a new request is as cheap and sees "c"
    flight.wrote("c", 1)
    assert flight.keep_for(*_typed("co"))
    flight.cancel("typing")


async def test_a_waiter_may_stop_at_a_time_or_at_the_next_line() -> None:
    flight = await _flight()
    assert not await flight.wait(until=time.perf_counter() + 0.02)  # the time came first
    waiter = asyncio.ensure_future(flight.wait(line=True))
    flight.wrote("total = 0", 3)
    await asyncio.sleep(0.01)
    assert not waiter.done()  # no line break yet
    flight.wrote("total = 0\n    ", 4)
    assert not await waiter  # woken by the line, the generation goes on
    assert flight.waiters == 0
    flight.cancel("typing")
    assert await flight.wait()


async def test_a_flight_answered_in_part_runs_on_without_waiters(monkeypatch) -> None:
    monkeypatch.setattr("loopls.lsp.completion.flight.ORPHAN_S", 0.01)
    flight = await _flight()
    await flight.wait(until=time.perf_counter())  # the request's last wait, before it answers
    flight.answered = 2  # ... with the lines so far
    await asyncio.sleep(0.05)
    assert not flight.task.done()  # its rest goes to the cache
    await flight.wait(until=time.perf_counter())
    await asyncio.sleep(0.05)
    assert not flight.task.done()
    flight.cancel("typing")  # a keystroke that does not agree still stops it
    await asyncio.sleep(0)
    assert flight.task.cancelled()
