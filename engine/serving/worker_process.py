"""What every engine process does first (standard library only: the language server imports it,
through standby.py, before anything heavy): stdout to stderr, and an end with the main process."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import sys
import threading


def prepare_worker_process() -> None:
    """First thing in an engine process: stdout to stderr, end with the main process."""
    # The language server speaks LSP on its stdout, which a spawned process inherits: anything
    # a library prints (NCCL's debug log goes to stdout) must land on stderr instead.
    try:
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdio (stdout or stderr closed)
        pass
    _exit_with_main_process()


def _exit_with_main_process() -> None:
    """End this process as soon as the main process is gone (a thread waiting on its sentinel,
    which the main process holds open while it lives), also in the middle of loading."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="loopls-main-watch", daemon=True).start()


def main_process_alive() -> bool:
    parent = multiprocessing.parent_process()
    return parent is None or parent.is_alive()
