"""`loopls/explainContext` answers within a bounded wait.

An explanation is an assembly of the prompt at one position (25-150 ms on the project
thread, behind the task running there). Per document the last explanation is kept with what
it was made for (document version, position, budget, layout, tokenizer, project generation):

- asked again for the same (the editor re-asking, a status view refreshing): answered at once;
- otherwise a fresh assembly starts (asking for one already under way joins it); when it is
  not ready within `wait_s` and the last explanation describes the same document version
  (the cursor moved, the text did not), that one is answered, marked `"stale": true` with
  the position it describes, and the fresh one is kept for the next request;
- a new document version (or none kept yet) waits for its assembly: an explanation of other
  text could show snippets that no longer apply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable

EXPLAIN_WAIT_S = 0.06  # leaves room in a 100 ms answer for the request's own work and the reply

# (document version, (line, character), everything else the assembly depends on)
Key = tuple[int | None, tuple[int, int], Hashable]


class Explanations:
    def __init__(self, wait_s: float = EXPLAIN_WAIT_S) -> None:
        self.wait_s = wait_s
        self._last: dict[str, tuple[Key, dict]] = {}  # uri -> the last explanation made
        self._running: dict[str, tuple[Key, asyncio.Future]] = {}  # uri -> the assembly under way

    async def get(self, uri: str, key: Key, make: Callable[[], Awaitable[dict]]) -> dict:
        """The explanation for `key` (see the module docstring); `make` assembles one."""
        last = self._last.get(uri)
        if last is not None and last[0] == key:
            return last[1]
        job = self._job(uri, key, make)
        if last is not None and last[0][0] == key[0]:
            await asyncio.wait({job}, timeout=self.wait_s)
            if not job.done():
                line, character = last[0][1]
                return {**last[1], "stale": True, "position": {"line": line, "character": character}}
        return await asyncio.shield(job)

    def _job(self, uri: str, key: Key, make: Callable[[], Awaitable[dict]]) -> asyncio.Future:
        running = self._running.get(uri)
        if running is not None and running[0] == key:
            return running[1]
        job = asyncio.ensure_future(make())
        self._running[uri] = (key, job)
        job.add_done_callback(lambda done: self._finished(uri, key, done))
        return job

    def _finished(self, uri: str, key: Key, job: asyncio.Future) -> None:
        current = self._running.get(uri, (None, None))[1] is job
        if current:
            del self._running[uri]
        if job.cancelled() or job.exception() is not None:
            return  # the request that asked gets the error; nothing is kept
        last = self._last.get(uri)
        if last is None and not current:
            return  # the document closed meanwhile (or a newer assembly took over a first one)
        if last is None or last[0][0] is None or key[0] is None or last[0][0] <= key[0]:
            self._last[uri] = (key, job.result())

    def forget(self, uri: str) -> None:
        """The document closed."""
        self._last.pop(uri, None)
        self._running.pop(uri, None)

    def __len__(self) -> int:
        return len(self._last) + len(self._running)
