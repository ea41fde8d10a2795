"""Stepping an EngineCore in the engine tests until it has nothing left to do."""

from __future__ import annotations


def drain(core, limit: int = 10_000) -> list:
    """Step `core` until it has no work; the events of every step. Fails after `limit` steps."""
    events = []
    for _ in range(limit):
        if not core.has_work:
            return events
        events += core.step()
    raise AssertionError("engine did not finish its work")
