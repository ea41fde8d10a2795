"""The one thread that owns the project models, with a lane for reads that overtake queued work.

Everything that touches a project runs here, one task at a time. Changes (builds, edits,
file events, smell checks, deferred symbol updates) run in the order they were submitted, so
the trees see the edits in the editor's order and a smell check of a document version runs
after that version's edits and before the next ones. A request that only reads (a
completion prompt, `loopls/explainContext`) goes in the read lane: it runs as soon as the
task running now ends, ahead of the changes still queued. Reads carry the document text
they were asked for, so the project's own copy being a few keystrokes behind only makes the
symbols of other definitions lag as much (long documents' symbols already lag until they
settle). Without the lane, an explanation asked for right after a burst of typing waited
for every smell check and symbol update queued before it (up to 0.9 s with a 20,000-line
buffer, docs/benchmarks.md).

While a completion that may still be shown is being generated, queued changes wait (`hold`):
a smell check lands ~300 ms after the last keystroke, right while the suggestion for that
pause decodes, and its tens of milliseconds of pure Python take the interpreter from the
engine's thread between every two of its operations. Reads still run, and a hold that is
never released ends after `MAX_HOLD_S`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_Task = tuple[Future, Callable[..., Any], tuple]
MAX_HOLD_S = 2.0  # longer than any completion's generation: queued changes never starve


class ProjectThread:
    def __init__(self, name: str) -> None:
        self._changes: deque[_Task] = deque()
        self._reads: deque[_Task] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._holds = 0
        self._held_since = 0.0
        # A daemon: a task still running at exit (a long build) must not keep the process alive.
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run `fn(*args)` after everything submitted before it."""
        return self._put(self._changes, fn, args)

    def submit_read(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run `fn(*args)` when the running task ends, before the queued changes (after the
        reads queued before it)."""
        return self._put(self._reads, fn, args)

    def _put(self, lane: deque[_Task], fn: Callable[..., Any], args: tuple) -> Future:
        future: Future = Future()
        with self._wake:
            if self._closed:
                raise RuntimeError("the project thread is shut down")
            lane.append((future, fn, args))
            self._wake.notify()
        return future

    @contextlib.contextmanager
    def hold(self):
        """Queued changes wait while the block runs (reads do not); holds nest."""
        with self._wake:
            if not self._holds:
                self._held_since = time.monotonic()
            self._holds += 1
        try:
            yield
        finally:
            with self._wake:
                self._holds -= 1
                self._wake.notify()

    def _holding(self) -> float:
        """Seconds the changes lane stays held (0: not held). Under the lock."""
        if not self._holds:
            return 0.0
        return max(0.0, self._held_since + MAX_HOLD_S - time.monotonic())

    def queued(self) -> int:
        with self._wake:
            return len(self._changes) + len(self._reads)

    def _next(self) -> _Task | None:
        with self._wake:
            while not (self._reads or self._closed or (self._changes and not self._holding())):
                self._wake.wait(self._holding() if self._changes else None)
            if self._reads:
                return self._reads.popleft()
            if self._changes:
                return self._changes.popleft()
            return None

    def _work(self) -> None:
        while (task := self._next()) is not None:
            future, fn, args = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
                future.set_exception(exc)
            else:
                future.set_result(result)
            del task, future, fn, args  # drop references to the task's arguments while idle

    def shutdown(self) -> None:
        """Cancel the queued tasks and stop after the running one (not waited for)."""
        with self._wake:
            self._closed = True
            pending = [*self._reads, *self._changes]
            self._reads.clear()
            self._changes.clear()
            self._wake.notify()
        for future, _, _ in pending:
            future.cancel()
