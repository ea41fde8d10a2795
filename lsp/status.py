"""The server's status for editor status bars: the `loopls/status` request and notification.

The shape is agreed with the editor clients (docs/architecture.md, "Status"): state
(loading | ready | busy | error | disabled), a message, the model, the last inline completion's
latency, the index's progress, the acceptance counters and the version. A push goes out on
every change of the state, the message, the model or the index; counters that change per
keystroke ride along with the next push. Changes within one turn of the event loop coalesce
into one notification.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

STATUS = "loopls/status"


class StatusReporter:
    def __init__(self, snapshot: Callable[[], dict[str, Any]], send: Callable[[dict[str, Any]], None]) -> None:
        self._snapshot = snapshot
        self._send = send
        self._last_key: str | None = None
        self._scheduled = False
        self.enabled = False  # pushes start once the client is initialized

    def current(self) -> dict[str, Any]:
        return self._snapshot()

    def changed(self) -> None:
        """Something a status bar shows may have changed: push (once per loop turn) if it did."""
        if not self.enabled or self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._scheduled = True
        loop.call_soon(self._push)

    def _push(self) -> None:
        self._scheduled = False
        status = self._snapshot()
        key = json.dumps(_significant(status), sort_keys=True)
        if key != self._last_key:
            self._last_key = key
            self._send(status)


def _significant(status: dict[str, Any]) -> dict[str, Any]:
    """The fields whose change is worth a push (not the per-keystroke counters)."""
    return {k: status.get(k) for k in ("state", "message", "model", "index", "version")}
