"""An engine process started before its model is known: the language server starts it first
thing, so that the new interpreter's imports (torch and the engine, about two seconds of CPU)
run beside the server's own imports and initialisation on another core, instead of after
them. The first engine process of one rank on a CPU (worker_group.py) takes it and hands it
its spec; a server whose model does not run in such a process ends it.

This module imports only the standard library: the server imports it before anything heavy.
The process sends stdout to stderr and watches its main process from the start (a server
killed while it waits or imports leaves nothing behind), then imports the engine, waits for
the spec and runs as `workers.worker_main` would.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from multiprocessing.connection import Connection
from typing import Any

from .worker_process import prepare_worker_process

PROCESS_NAME = "loopls-engine"


class StandbyProcess:
    """A spawned process waiting for its engine spec; `take` hands it over once."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self.conn, child_end = ctx.Pipe(duplex=True)
        self.proc: Any = ctx.Process(target=standby_main, args=(child_end,), name=PROCESS_NAME, daemon=True)
        try:
            self.proc.start()
        finally:
            child_end.close()
        self._taken = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def hand_over(self, spec: Any, port: int) -> tuple[Any, Connection] | None:
        """Send the process its spec (what `standby_main` waits for): (process, duplex pipe to
        it) the first time, while it lives; None after that, or when it died meanwhile (then
        it is ended)."""
        with self._lock:
            if self._taken:
                return None
            self._taken = True
            if self.proc.is_alive():
                try:
                    self.conn.send(("start", spec, port))
                    return self.proc, self.conn
                except (BrokenPipeError, OSError):  # it died meanwhile
                    pass
            self._end()
            return None

    def close(self) -> None:
        """End the process unless it was taken (from any thread; again is harmless)."""
        with self._lock:
            if self._taken:
                return
            self._taken = True
            self._end()

    def _end(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(10)
        self.conn.close()


def standby_main(conn: Connection) -> None:
    """Process entry: prepare, import the engine, wait for ("start", spec, port), run rank 0."""
    prepare_worker_process()
    from .workers import run_worker  # torch and the engine: the time this process saves

    try:
        message = conn.recv()
    except (EOFError, OSError):  # closed without a spec
        os._exit(0)
    _, spec, port = message
    run_worker(0, spec, port, [], conn)
