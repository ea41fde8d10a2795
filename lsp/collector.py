"""Short pauses of the cyclic garbage collector, and what `loopls/status` says of them.

A full collection (generation 2) walks every container object of the process while holding
the GIL from start to end. Once torch, the model and the project models are loaded that is
about 380,000 objects: 200-260 ms of CPU on the 2-core VM, and the event loop can neither
read nor answer meanwhile (the pulls of 318-465 ms in bench/worst_latency.py's 20,000-line
case were requests that arrived during one). Most of those objects are made while starting
(imported modules, the model, a folder's build and retrieval indexes) and live as long as
the server: `gc.freeze()` moves every object alive now out of the collector's sight, so
later full collections walk only what was made since (20,000-50,000 objects there: 7-37 ms).

Frozen objects are still freed by reference counting when they die; only garbage cycles
among them are never collected. So the server freezes after its long-lived work (a model
load, a build), not on a timer, and without a collection first (that would be the very
pause this avoids; what it would have found stays, a bounded one-time cost).
"""

from __future__ import annotations

import gc
import time


class Collector:
    """Freezes long-lived objects; counts full collections and the longest one (the GC's
    callbacks run on whichever thread allocated, with the GIL held)."""

    def __init__(self) -> None:
        self.full_collections = 0
        self.longest_full_s = 0.0
        self.freezes = 0
        self._started: float | None = None

    def watch(self) -> None:
        if self._observe not in gc.callbacks:
            gc.callbacks.append(self._observe)

    def unwatch(self) -> None:
        if self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)

    def freeze_long_lived(self) -> None:
        """Keep the objects alive now out of later full collections (O(1): a list splice)."""
        gc.freeze()
        self.freezes += 1

    def _observe(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.full_collections += 1
            self.longest_full_s = max(self.longest_full_s, time.perf_counter() - self._started)
            self._started = None

    def as_json(self) -> dict:
        # not gc.get_freeze_count(): it walks every frozen object (70-100 ms for 344,000)
        return {"freezes": self.freezes, "fullCollections": self.full_collections,
                "longestFullMs": round(self.longest_full_s * 1000, 1)}
